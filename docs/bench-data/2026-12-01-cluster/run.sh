#!/usr/bin/env bash
# Cluster fan-out side by side: by default two shardcast servers (`shardcast serve --redis URL
# --redis-key K --shards 1`) against two Node servers (loadtest/peers/node/server.js --redis URL
# --redis-key K, the official socket.io + @socket.io/redis-adapter), each pair one cluster on one
# Redis key, driven by `shardcast-loadtest cluster-fanout` (publishers on the first server,
# subscribers split evenly over both). CLUSTERS picks the clusters compared (see below):
#
#   (a) 10,000 broadcasts/s: ROOMS x RATE = 100 rooms x 100 msg/s, CLIENTS = 400 subscribers
#       (2 per room on each server), 64-byte payload, 10 s (then up to 10 s for late
#       deliveries; what has not arrived by then is lost); 3 runs, the clusters alternated
#       (their order rotated by one every run: with two, which goes first is swapped), fresh
#       servers and a fresh key for every run.
#       Medians of deliveries/s, loss, duplicates and reordering, local and remote latency,
#       the Redis hop (remote - local), each server's CPU per broadcast, Redis's CPU per
#       broadcast, the harness's CPU.
#   (b) a ramp per cluster (`ramp --shape cluster-fanout`, the same rooms and subscribers,
#       from 10 msg/s per room = 1,000 broadcasts/s, x1.25 a step, 5 s a step, at most 20
#       steps) up to its highest clean rate: no loss and p99 <= 50 ms; then 3 steps between
#       the highest rate that held and the lowest that broke, each at their geometric middle
#       (`--refine 3`: x1.25 alone tells a rate only within 25%, too coarse to compare two
#       clusters by ratio; RAMP_REFINE=0 for the plain ramp); 3 runs per cluster, alternated
#       the same way. SKIP_RAMP=1 leaves it out (and the summary has no ramp).
#
# CLUSTERS (default "shardcast node"): the clusters to compare, in the first run's order, each
# two servers of one kind with the same extra flags:
#   shardcast                   shardcast serve --shards 1 --redis URL --redis-key K
#   node                        node loadtest/peers/node/server.js --redis URL --redis-key K
#   shardcast-streams           shardcast, plus --redis-streams (redis-streams-adapter protocol)
#   shardcast-streams-recovery  shardcast, plus --redis-streams --recovery 60000
#   node-streams                the Node peer, plus --redis-streams (@socket.io/redis-streams-adapter)
#   node-streams-recovery       the Node peer, plus --redis-streams --recovery 60000
# The raw files and reports are named by cluster (raw/CLUSTER-fanout-runN.json, ...). With
# "shardcast node" (or one of them) the table has a row per cluster, as before; with any other
# cluster it has a column per cluster, and for every X-recovery next to its X a column
# "recovery on / off" (the ratio of the medians: CPU per broadcast, local and remote latency;
# in (b) also the highest clean rate).
#
# Pinning (this is a 2-core machine):
#   core 1: redis-server (a private one this script starts on 127.0.0.1:$REDIS_PORT) and both
#           servers of the cluster under test    -> taskset -c 1
#   core 0: the harness, shardcast-loadtest (its client threads and the publishers' thread)
#                                                -> taskset -c 0
# Nothing else may run on either core meanwhile (no build, no test): run it at a quiet time.
# The servers run with their defaults (shardcast: frames written at the end of each loop turn, a
# coalescing window only under saturation, as shipped since issue 12).
#
# Usage (from anywhere; release builds are made first, in $CARGO_TARGET_DIR or target/, unless
# SKIP_BUILD=1; `npm ci` in loadtest/peers/node if its node_modules is missing):
#   docs/bench-data/2026-12-01-cluster/run.sh                  # the measured run: ~10 min (~20 if every ramp runs all its steps)
#   QUICK=1 docs/bench-data/2026-12-01-cluster/run.sh          # a smoke run (~20 s, light load) into a temp dir
#   CLUSTERS="shardcast-streams shardcast-streams-recovery node-streams node-streams-recovery" \
#     SKIP_RAMP=1 OUT=/tmp/streams docs/bench-data/2026-12-01-cluster/run.sh
#                                                              # 4 clusters, (a) only: ~5 min (the ramp: ~5 min more per cluster)
#   docs/bench-data/2026-12-01-cluster/run.sh --summarize DIR  # table.md and summary.json again from DIR/raw
# Settings can be overridden from the environment (CLUSTERS, SKIP_RAMP, CLIENTS, ROOMS, RATE,
# DURATION, RUNS, DRAIN, RAMP_START, RAMP_FACTOR, RAMP_STEPS, RAMP_REFINE, RAMP_DURATION, RAMP_DRAIN, WARMUP,
# PARTS, P99_MS, REDIS_PORT, OUT). Give OUT for anything but the default clusters, or the run
# overwrites this folder's table and summary.
#
# Writes into this folder (OUT): table.md, summary.json, raw/ (the harness's JSON and table of
# every run, Redis CPU per run; settings.json with the clusters) and the harness's HTML reports
# (charts) of the first run of (a) and (b) per cluster (CLUSTER-fanout.html, CLUSTER-ramp.html).
# Server and Redis logs go to a temporary folder, removed at the end
# (kept, and named, when something failed). Every run is bounded: --duration and --drain,
# --setup-timeout, and `timeout` around each harness run; loopback only.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)

summarize() { # $1 = the folder with raw/
python3 - "$1" <<'PY'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
raw = out / "raw"
settings = json.loads((raw / "settings.json").read_text())
# The clusters compared and the extra flags of each (run.sh writes them; a folder from before
# CLUSTERS has neither: shardcast and node). What each name means is in run.sh's header.
CLUSTERS = settings.get("clusters") or ["shardcast", "node"]
FLAGS = settings.get("cluster_flags") or {}
DEFAULT_FLAGS = {"shardcast-streams": "--redis-streams", "node-streams": "--redis-streams",
                 "shardcast-streams-recovery": "--redis-streams --recovery 60000",
                 "node-streams-recovery": "--redis-streams --recovery 60000"}


def cluster_name(k):
    flags = FLAGS.get(k, DEFAULT_FLAGS.get(k, ""))
    if k.startswith("shardcast"):
        return " ".join(["2 x shardcast --shards 1"] + ([flags] if flags else []))
    if "--redis-streams" in flags:
        return f"2 x Node {flags} (socket.io + redis-streams-adapter)"
    return " ".join(["2 x Node"] + ([flags] if flags else []) + ["(socket.io + redis-adapter)"])


NAMES = {k: cluster_name(k) for k in CLUSTERS}
# Which parts ran (a folder from before SKIP_RAMP: both).
RAMP = "b" in (settings.get("parts") or "a b").split()
# Today's layout (a row per cluster) for shardcast and node; with any other cluster a column
# per cluster, and a "recovery on / off" column for every X-recovery next to its X.
BY_ROW = set(CLUSTERS) <= {"shardcast", "node"}
PAIRS = [(k, k[: -len("-recovery")]) for k in CLUSTERS
         if k.endswith("-recovery") and k[: -len("-recovery")] in CLUSTERS]


def load(name):
    p = raw / name
    return json.loads(p.read_text()) if p.exists() else None


def redis_cpu(tag):
    p = raw / f"{tag}.redis-cpu-us"
    return int(p.read_text().strip()) if p.exists() else None


def ms(us):
    return None if us is None else round(us / 1000.0, 3)


def per(n, d):
    return None if n is None or not d else round(n / d, 3)


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def server_cpu(c, i):
    s = c["servers"][i] if c and len(c["servers"]) > i else {}
    return s.get("cpu_us_per_broadcast")


def fanout_row(kind, run, j, tag):
    c = j["cluster"]
    return dict(
        cluster=kind, run=run, clean=j["clean"],
        deliveries_per_sec=j["deliveries_per_sec"], broadcasts_per_sec=c["broadcasts_per_sec"],
        expected=j["expected"], lost=j["lost"], duplicates=j["duplicates"], reordered=j["reordered"],
        latency_p50_ms=ms(j["latency_us"]["p50"]), latency_p99_ms=ms(j["latency_us"]["p99"]),
        local_p50_ms=ms(c["local"]["latency_us"]["p50"]), local_p99_ms=ms(c["local"]["latency_us"]["p99"]),
        remote_p50_ms=ms(c["remote"]["latency_us"]["p50"]), remote_p99_ms=ms(c["remote"]["latency_us"]["p99"]),
        hop_p50_ms=ms(c["redis_hop_us"]["p50"]), hop_p99_ms=ms(c["redis_hop_us"]["p99"]),
        local_lost=c["local"]["lost"], remote_lost=c["remote"]["lost"],
        server1_cpu_us_per_broadcast=server_cpu(c, 0), server2_cpu_us_per_broadcast=server_cpu(c, 1),
        redis_cpu_us_per_broadcast=per(redis_cpu(tag), c["broadcasts"]),
        harness_cpu_share=j["harness"]["cpu_share_of_available"],
        harness_bottleneck=j["harness"]["bottleneck"],
    )


def ramp_row(kind, run, j):
    rp = j["ramp"]
    steps = rp["steps"]
    # The ramp runs until a step breaks, then (--refine) steps between the highest rate that
    # held and the lowest that broke: the best is the highest step that held, what broke the
    # lowest step above it that did not (none when every step held).
    held = [s for s in steps if s["held"]]
    best = max(held, key=lambda s: s["rate"]) if held else None
    above = [s for s in steps if not s["held"] and (best is None or s["rate"] > best["rate"])]
    nxt = min(above, key=lambda s: s["rate"]) if above else None
    row = dict(cluster=kind, run=run, steps=len(steps),
               highest_rate_held_per_room=rp["highest_rate_held"],
               highest_broadcasts_per_sec=None if rp["highest_rate_held"] is None
               else round(rp["highest_rate_held"] * settings["rooms"], 1),
               ran_out_of_steps=nxt is None)
    if best:
        c = best.get("cluster") or {}
        row.update(
            deliveries_per_sec=best["deliveries_per_sec"],
            p99_ms=ms(best["latency_us"]["p99"]),
            local_p99_ms=ms(c.get("local", {}).get("latency_us", {}).get("p99")),
            remote_p99_ms=ms(c.get("remote", {}).get("latency_us", {}).get("p99")),
            hop_p99_ms=ms(c.get("redis_hop_us", {}).get("p99")),
            server1_cpu_us_per_broadcast=server_cpu(c, 0),
            server2_cpu_us_per_broadcast=server_cpu(c, 1),
            harness_cpu_share=best["harness_cpu_share"])
    if nxt:
        row["broke_at"] = dict(rate_per_room=nxt["rate"], lost=nxt["lost"], expected=nxt["expected"],
                               p99_ms=ms(nxt["latency_us"]["p99"]),
                               harness_cpu_share=nxt["harness_cpu_share"])
    return row


fan, ramps = [], []
for kind in CLUSTERS:
    for run in range(1, settings["runs"] + 1):
        tag = f"{kind}-fanout-run{run}"
        j = load(f"{tag}.json")
        if j:
            fan.append(fanout_row(kind, run, j, tag))
        j = load(f"{kind}-ramp-run{run}.json") if RAMP else None
        if j:
            ramps.append(ramp_row(kind, run, j))

MEDIAN_KEYS = ["deliveries_per_sec", "lost", "duplicates", "reordered", "local_p50_ms", "local_p99_ms",
               "remote_p50_ms", "remote_p99_ms", "hop_p50_ms", "hop_p99_ms",
               "server1_cpu_us_per_broadcast", "server2_cpu_us_per_broadcast",
               "redis_cpu_us_per_broadcast", "harness_cpu_share"]
fan_medians = {k: {m: med([r[m] for r in fan if r["cluster"] == k]) for m in MEDIAN_KEYS}
               for k in CLUSTERS if any(r["cluster"] == k for r in fan)}
ramp_medians = {k: {m: med([r.get(m) for r in ramps if r["cluster"] == k])
                    for m in ["highest_rate_held_per_room", "highest_broadcasts_per_sec",
                              "deliveries_per_sec", "local_p99_ms", "remote_p99_ms", "hop_p99_ms",
                              "server1_cpu_us_per_broadcast", "server2_cpu_us_per_broadcast"]}
                for k in CLUSTERS if any(r["cluster"] == k for r in ramps)}

# recovery on / off: the median of X-recovery over the median of X, for every pair measured.
FAN_RATIO_KEYS = ["local_p50_ms", "local_p99_ms", "remote_p50_ms", "remote_p99_ms",
                  "server1_cpu_us_per_broadcast", "server2_cpu_us_per_broadcast",
                  "redis_cpu_us_per_broadcast"]
RAMP_RATIO_KEYS = ["highest_broadcasts_per_sec", "local_p99_ms", "remote_p99_ms",
                   "server1_cpu_us_per_broadcast", "server2_cpu_us_per_broadcast"]


def on_off(medians, keys):
    return {on: dict(off=off, **{m: per(medians[on][m], medians[off][m]) for m in keys})
            for on, off in PAIRS if on in medians and off in medians}


fan_ratios, ramp_ratios = on_off(fan_medians, FAN_RATIO_KEYS), on_off(ramp_medians, RAMP_RATIO_KEYS)

s = settings
DEFAULT = CLUSTERS == ["shardcast", "node"]
what = ((f"{len(CLUSTERS)} clusters ({'; '.join(NAMES[k] for k in CLUSTERS)}), " if not DEFAULT else "")
        + f"shardcast-loadtest cluster-fanout, 2 servers per cluster on one Redis key, publishers on "
        f"server 1, {s['clients']} subscribers split evenly ({s['clients'] // s['rooms'] // 2} per room "
        f"on each server), {s['rooms']} rooms, {s['payload']}-byte payload; (a) {s['rate']} msg/s per room "
        f"= {s['rooms'] * s['rate']:,} broadcasts/s, {s['duration']} s, {s['runs']} runs alternated"
        + (" (the order rotated every run)" if len(CLUSTERS) > 2 else "") + "; "
        + (f"(b) ramp from {s['ramp_start']} msg/s per room x{s['ramp_factor']} per {s['ramp_duration']} s "
           f"step (at most {s['ramp_steps']} steps) while no loss and p99 <= {s['p99_ms']} ms"
           + (f", then {s['ramp_refine']} steps between the last that held and the first that broke "
              f"(geometric middles)" if s.get('ramp_refine') else "") + ", "
           f"{s['runs']} runs; " if RAMP else "")
        + f"each run after {s.get('warmup', 0)} s of unmeasured warm-up at its first rate; "
        f"servers and redis-server taskset -c 1, harness taskset -c 0")
command = ((f'CLUSTERS="{" ".join(CLUSTERS)}" ' if not DEFAULT else "") + ("SKIP_RAMP=1 " if not RAMP else "")
           + "docs/bench-data/2026-12-01-cluster/run.sh")
fanout = dict(runs=fan, medians=fan_medians)
if fan_ratios:
    fanout["recovery_on_off"] = fan_ratios
summary = dict(what=what, command=command, settings=settings, fanout=fanout)
if RAMP:
    summary["ramp"] = dict(runs=ramps, medians=ramp_medians)
    if ramp_ratios:
        summary["ramp"]["recovery_on_off"] = ramp_ratios
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def f(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.0f}"
    return f"{v}{unit}"


def runs(k, m, rows, unit=""):
    return " / ".join(f(r.get(m), unit) for r in rows if r["cluster"] == k)


def section(title, columns):
    return [title, "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def harness_cpu(k, m):
    rows = [r for r in fan if r["cluster"] == k]
    return (f"{f(None if m['harness_cpu_share'] is None else round(m['harness_cpu_share'] * 100), ' %')}"
            f"{' (BOTTLENECK in a run)' if any(r['harness_bottleneck'] for r in rows) else ''}")


def broke(k):  # what broke at the step after the highest clean rate, each run
    res = []
    for r in [r for r in ramps if r["cluster"] == k]:
        b = r.get("broke_at")
        if not b:
            res.append("ran out of steps")
            continue
        why = []
        if b["lost"]:
            why.append(f"lost {b['lost']:,} of {b['expected']:,}")
        if b["p99_ms"] is not None and b["p99_ms"] > s["p99_ms"]:
            why.append(f"p99 {f(b['p99_ms'], ' ms')}")
        if b["harness_cpu_share"] >= 0.9:
            why.append("harness at its limit")
        res.append(f"{f(b['rate_per_room'])}/room: " + (", ".join(why) or "?"))
    return "; ".join(res)


title = "shardcast and Node on Redis" if DEFAULT else "on Redis, " + ", ".join(CLUSTERS)
L = [f"# Cluster fan-out: {title} ({s['date']})", "",
     what + ".", f"Command: `{summary['command']}`. {s['environment']}", ""]
FAN_TITLE = (f"## (a) {s['rooms'] * s['rate']:,} broadcasts/s: medians of {s['runs']} runs"
             + (" (each run in brackets)" if BY_ROW or s["runs"] > 1 else ""))
RAMP_TITLE = f"## (b) highest clean rate: no loss and p99 <= {s['p99_ms']} ms"
if BY_ROW:
    L += section(FAN_TITLE,
                 ["cluster", "deliveries/s", "lost", "duplicates / reordered", "local p50 / p99",
                  "remote p50 / p99", "Redis hop p50 / p99", "server 1 CPU / broadcast",
                  "server 2 CPU / broadcast", "Redis CPU / broadcast", "harness CPU", "clean runs"])
    for k in fan_medians:
        m, rows = fan_medians[k], [r for r in fan if r["cluster"] == k]
        L.append(
            f"| {NAMES[k]} | **{f(m['deliveries_per_sec'])}** ({runs(k, 'deliveries_per_sec', fan)}) "
            f"| {runs(k, 'lost', fan)} | {runs(k, 'duplicates', fan)} / {runs(k, 'reordered', fan)} "
            f"| **{f(m['local_p50_ms'], ' ms')} / {f(m['local_p99_ms'], ' ms')}** "
            f"| **{f(m['remote_p50_ms'], ' ms')} / {f(m['remote_p99_ms'], ' ms')}** "
            f"| **{f(m['hop_p50_ms'], ' ms')} / {f(m['hop_p99_ms'], ' ms')}** ({runs(k, 'hop_p50_ms', fan)} / {runs(k, 'hop_p99_ms', fan)}) "
            f"| **{f(m['server1_cpu_us_per_broadcast'], ' µs')}** ({runs(k, 'server1_cpu_us_per_broadcast', fan)}) "
            f"| **{f(m['server2_cpu_us_per_broadcast'], ' µs')}** ({runs(k, 'server2_cpu_us_per_broadcast', fan)}) "
            f"| {f(m['redis_cpu_us_per_broadcast'], ' µs')} "
            f"| {harness_cpu(k, m)} "
            f"| {sum(r['clean'] for r in rows)} of {len(rows)} |")
else:
    # A column per cluster, then a "recovery on / off" column per pair.
    def table(medians, rows, ratios, spec):
        ks = list(medians)
        L.extend(["| | " + " | ".join(NAMES[k] for k in ks)
                  + "".join(f" | recovery on / off: {ratios[on]['off']}" for on in ratios) + " |",
                  "|" + " --- |" * (1 + len(ks) + len(ratios))])
        for label, cell, key in spec:
            L.append(f"| {label} | " + " | ".join(cell(k, medians[k]) for k in ks)
                     + "".join(" | " + ("" if key is None or ratios[on][key] is None
                                        else f"{ratios[on][key]:.2f}x") for on in ratios) + " |")

    def bold(m, unit, rows):  # the median in bold, each run in brackets (with more than one)
        return lambda k, med_: (f"**{f(med_[m], unit)}**"
                                + (f" ({runs(k, m, rows)})" if s["runs"] > 1 else ""))

    L += [FAN_TITLE, ""]
    table(fan_medians, fan, fan_ratios, [
        ("deliveries/s", bold("deliveries_per_sec", "", fan), None),
        ("lost", lambda k, m: runs(k, "lost", fan), None),
        ("duplicates", lambda k, m: runs(k, "duplicates", fan), None),
        ("reordered", lambda k, m: runs(k, "reordered", fan), None),
        ("local p50", bold("local_p50_ms", " ms", fan), "local_p50_ms"),
        ("local p99", bold("local_p99_ms", " ms", fan), "local_p99_ms"),
        ("remote p50", bold("remote_p50_ms", " ms", fan), "remote_p50_ms"),
        ("remote p99", bold("remote_p99_ms", " ms", fan), "remote_p99_ms"),
        ("Redis hop p50", bold("hop_p50_ms", " ms", fan), None),
        ("Redis hop p99", bold("hop_p99_ms", " ms", fan), None),
        ("server 1 CPU / broadcast", bold("server1_cpu_us_per_broadcast", " µs", fan), "server1_cpu_us_per_broadcast"),
        ("server 2 CPU / broadcast", bold("server2_cpu_us_per_broadcast", " µs", fan), "server2_cpu_us_per_broadcast"),
        ("Redis CPU / broadcast", lambda k, m: f(m["redis_cpu_us_per_broadcast"], " µs"), "redis_cpu_us_per_broadcast"),
        ("harness CPU", harness_cpu, None),
        ("clean runs", lambda k, m: (lambda rows: f"{sum(r['clean'] for r in rows)} of {len(rows)}")(
            [r for r in fan if r["cluster"] == k]), None),
    ])
L += ["", "Server 1 takes the publishes (and has half the subscribers); server 2 only receives "
      "through Redis. CPU per broadcast = the process's CPU time during the measured phase / "
      "broadcasts published; Redis's is over the whole harness run (setup included). Latency is "
      "from the scheduled send time (no coordinated omission); deliveries/s = distinct "
      f"deliveries / scheduled seconds, late ones arriving in the drain (at most {s['drain']} s) "
      "included; lost = not arrived by the end of the drain."
      + ("" if not (fan_ratios or ramp_ratios) else
         " recovery on / off = the median of X-recovery (--recovery 60000) / the median of X "
         "(above 1: more CPU or latency with connection state recovery on; for the highest clean "
         "rate, below 1: less throughput)."), ""]
if RAMP and BY_ROW:
    L += section(RAMP_TITLE,
                 ["cluster", "highest rate held, msg/s per room (each run)", "broadcasts/s (median)",
                  "deliveries/s there", "local / remote p99 there",
                  "server 1 / 2 CPU per broadcast there", "next step (what broke)"])
    for k in ramp_medians:
        m = ramp_medians[k]
        L.append(
            f"| {NAMES[k]} | {runs(k, 'highest_rate_held_per_room', ramps)} | **{f(m['highest_broadcasts_per_sec'])}** "
            f"| {f(m['deliveries_per_sec'])} | {f(m['local_p99_ms'], ' ms')} / {f(m['remote_p99_ms'], ' ms')} "
            f"| {f(m['server1_cpu_us_per_broadcast'], ' µs')} / {f(m['server2_cpu_us_per_broadcast'], ' µs')} "
            f"| {broke(k)} |")
elif RAMP:
    L += [RAMP_TITLE, ""]
    table(ramp_medians, ramps, ramp_ratios, [
        ("highest rate held, msg/s per room (each run)",
         lambda k, m: runs(k, "highest_rate_held_per_room", ramps), None),
        ("broadcasts/s (median)", lambda k, m: f"**{f(m['highest_broadcasts_per_sec'])}**",
         "highest_broadcasts_per_sec"),
        ("deliveries/s there", lambda k, m: f(m["deliveries_per_sec"]), None),
        ("local p99 there", lambda k, m: f(m["local_p99_ms"], " ms"), "local_p99_ms"),
        ("remote p99 there", lambda k, m: f(m["remote_p99_ms"], " ms"), "remote_p99_ms"),
        ("server 1 CPU per broadcast there", lambda k, m: f(m["server1_cpu_us_per_broadcast"], " µs"),
         "server1_cpu_us_per_broadcast"),
        ("server 2 CPU per broadcast there", lambda k, m: f(m["server2_cpu_us_per_broadcast"], " µs"),
         "server2_cpu_us_per_broadcast"),
        ("next step (what broke)", lambda k, m: broke(k), None),
    ])
L += ([""] if L[-1] else []) + ["Charts: the harness's HTML reports next to this table (`*-fanout.html`: latency per "
      "second and the percentile spectrum, local and remote apart"
      + ("; `*-ramp.html`: p99 per step, local and remote apart" if RAMP else "")
      + "). Raw JSON of every run in `raw/`.", ""]
(out / "table.md").write_text("\n".join(L))
print("\n".join(L))
PY
}

if [ "${1:-}" = "--summarize" ]; then
  [ -d "${2:-}/raw" ] || { echo "usage: $0 --summarize DIR (with DIR/raw)" >&2; exit 2; }
  summarize "$2"
  exit $?
fi

# ---- settings ----------------------------------------------------------------------------
if [ -n "${QUICK:-}" ]; then
  # A smoke run: light load, short, one run, into a temporary folder.
  : "${CLIENTS:=40}" "${ROOMS:=10}" "${RATE:=20}" "${DURATION:=2}" "${RUNS:=1}"
  : "${RAMP_START:=10}" "${RAMP_STEPS:=3}" "${RAMP_DURATION:=1}" "${OUT:=$(mktemp -d /tmp/cluster-bench-quick.XXXXXX)}"
fi
CLIENTS=${CLIENTS:-400}         # subscribers, split evenly over the 2 servers
ROOMS=${ROOMS:-100}
RATE=${RATE:-100}               # msg/s per room: ROOMS x RATE = 10,000 broadcasts/s
PAYLOAD=${PAYLOAD:-64}
DURATION=${DURATION:-10}        # s per (a) run
DRAIN=${DRAIN:-10}              # s, at most, after each (a) schedule (ends once all arrived)
RUNS=${RUNS:-3}
RAMP_START=${RAMP_START:-10}    # msg/s per room at the first step
RAMP_FACTOR=${RAMP_FACTOR:-1.25}
RAMP_STEPS=${RAMP_STEPS:-20}    # 10 x 1.25^19 = 694/room = 69,400 broadcasts/s at most
RAMP_REFINE=${RAMP_REFINE:-3}   # steps between the last that held and the first that broke:
                                # x1.25 tells a rate within 25%, 3 more within 3%
RAMP_DURATION=${RAMP_DURATION:-5}
RAMP_DRAIN=${RAMP_DRAIN:-3}     # a step that needs more has broken anyway
WARMUP=${WARMUP:-5}             # s of unmeasured traffic at the first rate before each run
                                # (Node's JIT: without it the first ramp step measures its cold start)
PARTS=${PARTS:-a b}             # which parts to run
case ${SKIP_RAMP:-} in ""|0) ;; *) PARTS=${PARTS//b/} ;; esac   # SKIP_RAMP=1: no (b)
CLUSTERS=${CLUSTERS:-shardcast node}   # the clusters compared, in the first run's order
RECOVERY_MS=60000               # --recovery of the *-recovery clusters
P99_MS=${P99_MS:-50}
REDIS_PORT=${REDIS_PORT:-6390}
OUT=${OUT:-$HERE}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SHARDCAST=$TARGET/release/shardcast
LT=$TARGET/release/shardcast-loadtest
NODE_PEER=$ROOT/loadtest/peers/node/server.js
REDIS_URL=redis://127.0.0.1:$REDIS_PORT

TMP=$(mktemp -d /tmp/cluster-bench-logs.XXXXXX)
STARTED=()     # PIDs this script started, stopped by PID at the end
REDIS_PID=

log() { echo "run.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local rc=$?
  for pid in "${STARTED[@]}" $REDIS_PID; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [ $rc -eq 0 ]; then rm -rf "$TMP"; else log "logs kept in $TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cluster_kind CLUSTER: sets SERVER (shardcast or node) and EXTRA (the flags both its servers
# get besides --port, --redis and --redis-key); fails on a name not in the set.
cluster_kind() {
  case $1 in
    shardcast|node) SERVER=$1; EXTRA=() ;;
    shardcast-streams|node-streams) SERVER=${1%-streams}; EXTRA=(--redis-streams) ;;
    shardcast-streams-recovery|node-streams-recovery)
      SERVER=${1%-streams-recovery}; EXTRA=(--redis-streams --recovery "$RECOVERY_MS") ;;
    *) return 1 ;;
  esac
}

read -ra CLUSTER_LIST <<<"$CLUSTERS"
[ ${#CLUSTER_LIST[@]} -ge 1 ] || die "CLUSTERS is empty"
for c in "${CLUSTER_LIST[@]}"; do
  cluster_kind "$c" || die "unknown cluster '$c' in CLUSTERS (shardcast, node, shardcast-streams, shardcast-streams-recovery, node-streams, node-streams-recovery)"
done
[ "$(printf '%s\n' "${CLUSTER_LIST[@]}" | sort | uniq -d)" = "" ] || die "a cluster twice in CLUSTERS"

[ "$(nproc --all)" -ge 2 ] || die "needs cores 0 and 1"
command -v redis-server >/dev/null || die "redis-server is needed"
command -v node >/dev/null || die "node is needed"
command -v python3 >/dev/null || die "python3 is needed (table.md, summary.json)"

if [ -z "${SKIP_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release -p shardcast -p shardcast-loadtest \
      --bin shardcast --bin shardcast-loadtest) || die "build failed"
fi
[ -x "$SHARDCAST" ] && [ -x "$LT" ] || die "no release builds in $TARGET/release"
[ -d "$ROOT/loadtest/peers/node/node_modules" ] ||
  (cd "$ROOT/loadtest/peers/node" && npm ci --no-audit --no-fund) || die "npm ci failed"
"$LT" cluster-fanout --help >/dev/null || die "$LT has no cluster-fanout scenario"

# ---- Redis: a private one on core 1 -----------------------------------------------------
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && die "something already answers on port $REDIS_PORT (set REDIS_PORT)"
taskset -c 1 redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "redis-server did not start: $(tail -3 "$TMP/redis.log")"
TICK=$(getconf CLK_TCK)
redis_cpu_us() { # user + system CPU of our redis-server, µs
  awk -v t="$TICK" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000000 / t) }' "/proc/$REDIS_PID/stat"
}

# ---- servers -----------------------------------------------------------------------------
# start_server CLUSTER KEY NAME: one server of the cluster on core 1; sets PID and URL.
start_server() {
  local kind=$1 key=$2 log=$TMP/$3.log port
  cluster_kind "$kind" || die "unknown cluster $kind"
  case $SERVER in
    shardcast) taskset -c 1 "$SHARDCAST" serve --port 0 --shards 1 --redis "$REDIS_URL" \
                 --redis-key "$key" "${EXTRA[@]}" >"$log" 2>&1 & ;;
    node) taskset -c 1 node "$NODE_PEER" --port 0 --redis "$REDIS_URL" --redis-key "$key" \
            "${EXTRA[@]}" >"$log" 2>&1 & ;;
  esac
  PID=$!
  STARTED+=("$PID")
  for _ in $(seq 150); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log")
    if [ -n "$port" ]; then URL=http://127.0.0.1:$port; return 0; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  die "$kind did not start: $(tail -3 "$log")"
}

# start_cluster KIND TAG: two servers on one fresh key; sets PIDS and URLS (comma-separated).
start_cluster() {
  local key="bench-$2-$$" u=() p=()
  for i in 1 2; do
    start_server "$1" "$key" "$2-server$i"
    u+=("$URL"); p+=("$PID")
  done
  URLS=$(IFS=,; echo "${u[*]}"); PIDS=$(IFS=,; echo "${p[*]}")
}

stop_cluster() {
  local pid keep=()
  for pid in ${PIDS//,/ }; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for pid in "${STARTED[@]}"; do [[ ",$PIDS," == *",$pid,"* ]] || keep+=("$pid"); done
  STARTED=("${keep[@]}")
}

# harness SECONDS ARGS...: one bounded run of the harness on core 0.
harness() {
  local budget=$1; shift
  timeout --kill-after=10 "$budget" taskset -c 0 "$LT" "$@" --quiet
}

mkdir -p "$OUT/raw"
cat >"$OUT/raw/settings.json" <<JSON
{"date": "$(date +%F)", "clients": $CLIENTS, "rooms": $ROOMS, "rate": $RATE, "payload": $PAYLOAD,
 "duration": $DURATION, "drain": $DRAIN, "runs": $RUNS, "ramp_start": $RAMP_START,
 "ramp_factor": $RAMP_FACTOR, "ramp_steps": $RAMP_STEPS, "ramp_refine": $RAMP_REFINE, "ramp_duration": $RAMP_DURATION,
 "ramp_drain": $RAMP_DRAIN, "warmup": $WARMUP,
 "p99_ms": $P99_MS,
 "parts": "$(read -ra p <<<"$PARTS"; echo "${p[*]}")", "clusters": [$(printf '"%s", ' "${CLUSTER_LIST[@]}" | sed 's/, $//')],
 "cluster_flags": {$(for c in "${CLUSTER_LIST[@]}"; do cluster_kind "$c"; printf '"%s": "%s", ' "$c" "${EXTRA[*]}"; done | sed 's/, $//')},
 "environment": "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), kernel $(uname -r), $(nproc --all) cores, node $(node --version), redis $(redis-server --version | awk '{print $3}' | tr -d v=), redis-server taskset -c 1 on its own port"}
JSON

# alternated WHAT: RUNS runs of the function WHAT against each cluster, alternated (the order
# of CLUSTERS rotated by one every run: run 2 starts with the second cluster, ...; with two,
# which goes first is swapped), each on fresh servers and a fresh key. WHAT gets the run's tag
# and writes raw/TAG.json (and, in the first run, the HTML report CLUSTER-WHAT.html); its table
# goes to raw/TAG.txt, the Redis CPU it cost to raw/TAG.redis-cpu-us.
alternated() {
  local what=$1 run kind tag order cpu0 n=${#CLUSTER_LIST[@]} i
  for run in $(seq "$RUNS"); do
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${CLUSTER_LIST[(run - 1 + i) % n]}"); done
    for kind in "${order[@]}"; do
      tag=$kind-$what-run$run
      REPORT=(); [ "$run" -eq 1 ] && REPORT=(--report "$OUT/$kind-$what.html")
      start_cluster "$kind" "$tag"
      cpu0=$(redis_cpu_us)
      "$what" "$tag" >"$OUT/raw/$tag.txt" || die "$tag failed (see $OUT/raw/$tag.txt)"
      echo $(( $(redis_cpu_us) - cpu0 )) >"$OUT/raw/$tag.redis-cpu-us"
      stop_cluster
    done
  done
}

# (a) ROOMS x RATE broadcasts/s (10,000).
fanout() {
  log "(a) $1: $ROOMS rooms x $RATE msg/s, $CLIENTS subscribers"
  harness $((WARMUP + DURATION + 2 * DRAIN + 150)) cluster-fanout --url "$URLS" --server-pid "$PIDS" \
    --clients "$CLIENTS" --rooms "$ROOMS" --rate "$RATE" --duration "$DURATION" \
    --drain "$DRAIN" --payload "$PAYLOAD" --setup-timeout 60 --warmup "$WARMUP" \
    --json "$OUT/raw/$1.json" "${REPORT[@]}"
}

# (b) the ramp to the highest clean rate.
ramp() {
  log "(b) $1: from $RAMP_START msg/s per room x$RAMP_FACTOR, at most $RAMP_STEPS steps"
  harness $((WARMUP + (RAMP_STEPS + RAMP_REFINE) * (RAMP_DURATION + RAMP_DRAIN + 20) + 150)) ramp --shape cluster-fanout \
    --url "$URLS" --server-pid "$PIDS" --clients "$CLIENTS" --rooms "$ROOMS" \
    --rate "$RAMP_START" --step-factor "$RAMP_FACTOR" --steps "$RAMP_STEPS" --refine "$RAMP_REFINE" \
    --duration "$RAMP_DURATION" --drain "$RAMP_DRAIN" --p99-ms "$P99_MS" --max-loss 0 \
    --payload "$PAYLOAD" --setup-timeout 60 --warmup "$WARMUP" \
    --json "$OUT/raw/$1.json" "${REPORT[@]}"
}

[[ " $PARTS " == *" a "* ]] && alternated fanout
[[ " $PARTS " == *" b "* ]] && alternated ramp

summarize "$OUT" || die "summarizing failed"
log "wrote $OUT/table.md and $OUT/summary.json"

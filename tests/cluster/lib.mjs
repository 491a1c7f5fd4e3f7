// Helpers of the cluster suite: start shardcast servers (SHARDCAST) and the Node peer
// (NODE_PEER, the official server with @socket.io/redis-adapter) on one Redis, connect
// official clients, wait for what they receive. Every process and socket started here is
// stopped when the test file ends.

import { after } from "node:test";
import { spawn } from "node:child_process";
import net from "node:net";
import { io } from "socket.io-client";

const SHARDCAST = process.env.SHARDCAST;
const NODE_PEER = process.env.NODE_PEER;
export const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const T = { timeout: 30000 };
const procs = new Set();
const sockets = new Set();
let stopping = false;
after(() => {
  stopping = true;
  for (const s of sockets) s.close();
  for (const p of procs) p.kill("SIGTERM");
});

export function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts a server of `kind` ("shardcast" or "node") in the cluster `key` and waits for its
// `listening on`: { url, proc, port }. `redis` overrides the Redis URL, `args` adds flags.
export async function server(kind, key, { redis = REDIS, args = [], port } = {}) {
  port ??= await freePort();
  const argv =
    kind === "shardcast"
      ? [SHARDCAST, ["serve", "--port", String(port), "--shards", "2", "--redis", redis, "--redis-key", key, ...args]]
      : ["node", [NODE_PEER, "--port", String(port), "--redis", redis, "--redis-key", key, ...args]];
  const proc = spawn(argv[0], argv[1], { stdio: ["ignore", "pipe", "pipe"] });
  procs.add(proc);
  proc.stderrText = "";
  proc.stderr.on("data", (d) => (proc.stderrText += d));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not listen: ${proc.stderrText}`)), 15000);
    proc.stdout.on("data", (d) => {
      if (/listening on/.test(String(d))) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on("exit", (code) => reject(new Error(`${kind} exited ${code}: ${proc.stderrText}`)));
  });
  proc.on("exit", (code, signal) => {
    if (!stopping) console.error(`${kind} on port ${port} exited (${code ?? signal}):\n${proc.stderrText}`);
  });
  return { url: `http://127.0.0.1:${port}`, proc, port };
}

// The URL of a new server of `kind` in cluster `key`.
export async function start(kind, key, opts) {
  return (await server(kind, key, opts)).url;
}

export async function client(url) {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  sockets.add(s);
  await new Promise((resolve, reject) => {
    s.on("connect", resolve);
    s.on("connect_error", reject);
  });
  return s;
}

export const ack = (s, ...args) => s.timeout(8000).emitWithAck(...args);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves with the reason once `s` is disconnected.
export function disconnected(s) {
  return new Promise((resolve) => (s.connected ? s.once("disconnect", resolve) : resolve("already")));
}

export function collect(s, event) {
  const got = [];
  s.on(event, (...args) => got.push(args));
  return got;
}

// Waits until `pred()` (which may be async) holds, for at most `ms`.
export async function until(pred, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}


// Publishes `event` to `room` from `from` (the demo app's `publish`), a new argument each
// time, until every one of `members` has had one; none gets the same one twice. A server
// subscribes to a new room's sharded channel without holding up the join (as the Node
// adapter does), so on a loaded machine or a Redis Cluster the first publish to a room
// may come before the subscription.
export async function reachesAll(from, room, event, members) {
  const got = members.map((c) => collect(c, event));
  let n = 0;
  await until(async () => {
    if ((await ack(from, "publish", room, event, n++)) !== true) throw new Error("publish refused");
    await sleep(50);
    return got.every((g) => g.length > 0);
  }, `${event} to ${room} everywhere`);
  for (const g of got) {
    const args = g.map((a) => a[0]);
    if (new Set(args).size !== args.length) throw new Error(`${event} twice: ${args}`);
  }
  for (const c of members) c.off(event);
}

// A TCP proxy (a load balancer's part) whose upstream can be switched with `to(port)`:
// `cut()` closes every connection through it (both ends, as a network drop seen by both),
// `hold()` keeps new connections waiting until `release()`, `sever()` closes the client's
// end of every connection but leaves the server's open and silent (a half-open connection:
// the server learns only by its ping timeout). When the upstream closes a connection, the
// client's end is closed too. Closed when the test file ends.
const proxies = new Set();
after(() => {
  for (const p of proxies) p.close();
});

export async function proxy(port) {
  let target = port;
  let held = null;
  const pairs = new Set();
  const severed = [];
  const srv = net.createServer((down) => {
    const go = () => {
      const up = net.connect(target, "127.0.0.1");
      const pair = { up, down };
      pairs.add(pair);
      const end = () => {
        pairs.delete(pair);
        up.destroy();
        down.destroy();
      };
      up.on("error", end).on("close", end);
      down.on("error", end).on("close", end);
      down.pipe(up);
      up.pipe(down);
    };
    if (held) held.push(go);
    else go();
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const p = {
    url: `http://127.0.0.1:${srv.address().port}`,
    to(p) {
      target = p;
    },
    hold() {
      held = [];
    },
    release() {
      const waiting = held ?? [];
      held = null;
      for (const go of waiting) go();
    },
    cut() {
      for (const { up, down } of pairs) {
        up.destroy();
        down.destroy();
      }
      pairs.clear();
    },
    sever() {
      for (const { up, down } of pairs) {
        up.unpipe(down);
        down.unpipe(up);
        up.removeAllListeners("close").removeAllListeners("error").on("error", () => {});
        up.resume();
        down.destroy();
        severed.push(up);
      }
      pairs.clear();
    },
    close() {
      this.cut();
      for (const up of severed) up.destroy();
      srv.close();
    },
  };
  proxies.add(p);
  return p;
}

// The `shardcast_table_entries` of a server started with `--metrics 127.0.0.1:PORT`.
export async function tables(metricsPort) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^shardcast_table_entries\{table="([^"]+)"\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

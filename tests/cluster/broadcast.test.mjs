// Broadcasts across a mixed cluster on one Redis: shardcast servers (SHARDCAST, --shards 2)
// and the official Node server with @socket.io/redis-adapter (NODE_PEER), same key. Clients
// on every server join a room; a publish from a client of any server reaches the members on
// every server once, with binary arguments, in the publisher's order; `except` and another
// key's cluster are respected.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { io } from "socket.io-client";

const SHARDCAST = process.env.SHARDCAST;
const NODE_PEER = process.env.NODE_PEER;
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const T = { timeout: 30000 };
const procs = new Set();
const sockets = new Set();
after(() => {
  for (const s of sockets) s.close();
  for (const p of procs) p.kill("SIGTERM");
});

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function start(kind, key) {
  const port = await freePort();
  const argv =
    kind === "shardcast"
      ? [SHARDCAST, ["serve", "--port", String(port), "--shards", "2", "--redis", REDIS, "--redis-key", key]]
      : ["node", [NODE_PEER, "--port", String(port), "--redis", REDIS, "--redis-key", key]];
  const proc = spawn(argv[0], argv[1], { stdio: ["ignore", "pipe", "pipe"] });
  procs.add(proc);
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not listen: ${err}`)), 15000);
    proc.stdout.on("data", (d) => {
      if (/listening on/.test(String(d))) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on("exit", (code) => reject(new Error(`${kind} exited ${code}: ${err}`)));
  });
  return `http://127.0.0.1:${port}`;
}

async function client(url) {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  sockets.add(s);
  await new Promise((resolve, reject) => {
    s.on("connect", resolve);
    s.on("connect_error", reject);
  });
  return s;
}

const ack = (s, ...args) => s.timeout(5000).emitWithAck(...args);

function collect(s, event) {
  const got = [];
  s.on(event, (...args) => got.push(args));
  return got;
}

async function until(pred, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("cluster broadcasts", { concurrency: false }, () => {
  test("shardcast, shardcast and Node on one key: every member of every server gets each publish once, in order", T, async () => {
    const key = `sc-test-${process.pid}-a`;
    const urls = [await start("shardcast", key), await start("shardcast", key), await start("node", key)];
    const members = [];
    for (const url of urls) for (let i = 0; i < 2; i++) members.push(await client(url));
    const outsider = await client(urls[0]);
    for (const m of members) assert.deepStrictEqual(await ack(m, "join", "room"), true);
    const got = members.map((m) => collect(m, "news"));
    const outsiderGot = collect(outsider, "news");
    // a publisher on each server, each sending a numbered stream with binary
    const publishers = [members[0], members[2], members[4]];
    for (let n = 0; n < 20; n++) {
      for (const [p, who] of publishers.map((p, i) => [p, i])) {
        p.emit("publish", "room", "news", who, n, Buffer.from([who, n]));
      }
    }
    await until(() => got.every((g) => g.length === 60), "60 messages at every member");
    for (const g of got) {
      for (let who = 0; who < 3; who++) {
        const mine = g.filter((m) => m[0] === who);
        assert.deepStrictEqual(mine.map((m) => m[1]), [...Array(20).keys()], "order per publisher");
        for (const m of mine) assert.deepStrictEqual([...m[2]], [who, m[1]], "binary argument");
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(outsiderGot.length, 0, "a socket outside the room gets nothing");
    assert.ok(got.every((g) => g.length === 60), "no duplicates");
  });

  test("another key is another cluster", T, async () => {
    const [a, b] = [await start("shardcast", `sc-test-${process.pid}-b1`), await start("node", `sc-test-${process.pid}-b2`)];
    const [ca, cb] = [await client(a), await client(b)];
    for (const c of [ca, cb]) await ack(c, "join", "room");
    const gotB = collect(cb, "news");
    const gotA = collect(ca, "news");
    ca.emit("publish", "room", "news", "from-a");
    await until(() => gotA.length === 1, "the local member");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(gotB.length, 0);
  });
});

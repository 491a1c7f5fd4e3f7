// Redis stopped and restarted under a running mixed cluster (two shardcast servers and the
// Node server, on a private redis-server started here on a free loopback port): while it is
// away local delivery goes on at once and nothing crashes; once it is back, cross-server
// traffic works again within 10 s, in both directions, and nothing is ever duplicated.
// Also: a malformed or hostile message on the cluster's channels is ignored by shardcast
// servers (only shardcast servers in that test: the official adapter throws on a broadcast
// that is not MessagePack, which ends the Node process).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createClient } from "redis";
import { io } from "socket.io-client";
import { T, ack, client, collect, freePort, server, sleep, until } from "./lib.mjs";

function redisServer(port) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    proc.stdout.on("data", (d) => /Ready to accept connections/.test(String(d)) && resolve(proc));
    proc.on("exit", (code) => reject(new Error(`redis-server exited ${code}`)));
  });
}

const stop = (proc) => new Promise((resolve) => (proc.once("exit", resolve), proc.kill("SIGKILL")));

const protocol = (args) =>
  (args.length ? args[0].slice("--redis-".length) : "classic") + (args.includes("--recovery") ? " with recovery" : "");

for (const args of [[], ["--redis-sharded"], ["--redis-streams"], ["--redis-streams", "--recovery", "60000"]]) describe(`Redis away and back (${protocol(args)})`, { concurrency: false }, () => {
  const key = `sc-faults-${process.pid}${args.join("")}`;
  let port, url, redis, servers, members;
  before(async () => {
    port = await freePort();
    url = `redis://127.0.0.1:${port}`;
    redis = await redisServer(port);
    servers = [];
    for (const kind of ["shardcast", "shardcast", "node"]) servers.push(await server(kind, key, { redis: url, args }));
    members = [];
    for (const s of servers) members.push(await client(s.url), await client(s.url));
    for (const m of members) assert.equal(await ack(m, "join", "room"), true);
  });
  after(async () => {
    if (redis) await stop(redis);
  });

  test("a hostile message on the channels is ignored, and the cluster goes on", T, async () => {
    const hostileKey = `${key}-hostile`;
    const pair = [await server("shardcast", hostileKey, { redis: url, args }), await server("shardcast", hostileKey, { redis: url, args })];
    const pm = [await client(pair[0].url), await client(pair[1].url)];
    for (const m of pm) assert.equal(await ack(m, "join", "room"), true);
    const raw = createClient({ url });
    await raw.connect();
    const junk = [
      Buffer.from([0xc1]),
      Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]),
      Buffer.from([0x93, 0xa1, 0x78]),
      Buffer.from("{\"type\": 7, \"requestId\": []}"),
      Buffer.from("{\"type\": 99}"),
      Buffer.from("[".repeat(5000)),
      Buffer.from([0x93, 0xa3, 0x75, 0x69, 0x64, 0x83, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x02, 0xa4, 0x64, 0x61, 0x74, 0x61, 0x90, 0xa3, 0x6e, 0x73, 0x70, 0xa1, 0x2f, 0x80]),
    ];
    const publish = (channel, j) => (args[0] === "--redis-sharded" ? raw.sPublish(channel, j) : raw.publish(channel, j));
    for (const j of junk) {
      await publish(`${hostileKey}#/#`, j);
      await publish(`${hostileKey}#/#room#`, j);
      await publish(`${hostileKey}-request#/#`, j);
      await publish(`${hostileKey}-response#/#`, j);
    }
    if (args[0] === "--redis-streams") {
      // and entries in the stream: malformed data, missing and hostile fields
      const entries = [
        { uid: "x", nsp: "/", type: "3", data: "{\"packet\":" },
        { uid: "x", nsp: "/", type: "3", data: "!!!not base64" },
        { uid: "x", nsp: "/", type: "3", data: Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]).toString("base64") },
        { uid: "x", nsp: "/", type: "99", data: "{}" },
        { uid: "x", nsp: "/", type: "8", data: "{\"requestId\":\"r\",\"sockets\":[]}" },
        { nsp: "/", type: "3" },
        { uid: "x", nsp: "/", type: "3", data: "[".repeat(5000) },
      ];
      for (const e of entries) await raw.xAdd(hostileKey, "*", e);
    }
    await raw.quit();
    const got = pm.map((m) => collect(m, "after-junk"));
    assert.equal(await ack(pm[0], "publish", "room", "after-junk", 1), true);
    await until(() => got.every((g) => g.length === 1), "every member after the junk");
    for (const s of pair) assert.equal(s.proc.exitCode, null, "no server exited");
  });

  test("Redis killed: local delivery goes on; restarted: the cluster is whole again within 10 s", { timeout: 60000 }, async () => {
    const got = members.map((m) => collect(m, "seq"));
    await stop(redis);
    redis = null;
    await sleep(300);
    // local delivery, at once, on every server (but the Node server in sharded and streams
    // modes: its ClusterAdapter awaits the publish before delivering locally, so its local
    // delivery waits for Redis to come back)
    for (const [i] of servers.entries()) {
      if (args.length && i === 2) continue;
      assert.equal(await ack(members[2 * i], "publish", "room", "seq", `local-${i}`), true);
      await until(() => [0, 1].every((k) => got[2 * i + k].some((m) => m[0] === `local-${i}`)), `local delivery on server ${i}`, 2000);
    }
    // a request cannot be answered: it fails, the server stays up
    const r = await ack(members[0], "server-side-emit-with-ack", "while-away");
    assert.notEqual(r.error, null, JSON.stringify(r));
    if (args.includes("--recovery")) {
      // a client coming back cannot be restored (Redis holds its session): a new session,
      // at once, on every shardcast server
      for (const s of servers.slice(0, 2)) {
        const started = Date.now();
        const c = io(s.url, {
          transports: ["websocket"],
          forceNew: true,
          reconnection: false,
          auth: { pid: members[0]._pid, offset: "1-0" },
        });
        await new Promise((resolve, reject) => (c.once("connect", resolve), c.once("connect_error", reject)));
        const w = await ack(c, "whoami");
        assert.equal(w.recovered, false);
        assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
        c.close();
      }
    }
    await sleep(1500);
    redis = await redisServer(port);
    const back = Date.now();
    // every server's publish reaches every other server's members again
    for (const [i] of servers.entries()) {
      let n = 0;
      await until(async () => {
        const tag = `again-${i}-${n++}`;
        await ack(members[2 * i], "publish", "room", "seq", tag);
        await sleep(100);
        return got.every((g) => g.some((m) => m[0] === tag));
      }, `server ${i} reaching everyone`, 15000);
    }
    const whole = Date.now() - back;
    console.log(`# ${protocol(args)}: whole again ${whole} ms after Redis came back`);
    assert.ok(whole < 10000, `whole again after ${whole} ms`);
    await sleep(300);
    for (const g of got) {
      const tags = g.map((m) => m[0]);
      assert.equal(new Set(tags).size, tags.length, `no duplicates: ${tags}`);
    }
    for (const s of servers) assert.equal(s.proc.exitCode, null, "no server exited");
    const said = servers[0].proc.stderrText;
    assert.match(said, /lost the connection to Redis/);
    assert.match(said, /reconnected to Redis/);
  });
});

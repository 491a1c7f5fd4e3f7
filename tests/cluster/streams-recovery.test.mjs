// Connection state recovery across servers on the Redis Streams adapter: a client of the
// official socket.io-client goes through a TCP proxy (as through a load balancer), its
// connection is cut, the cluster goes on broadcasting, and the proxy sends its reconnection
// to another server: shardcast to shardcast, shardcast to the official Node server (with
// @socket.io/redis-streams-adapter and connectionStateRecovery) and Node to shardcast. The
// client gets its socket id and rooms back (`socket.recovered`), every packet it missed
// once and in order (binary included), then live traffic with no gap and no duplicate.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "redis";
import { io } from "socket.io-client";
import { REDIS, T, ack, client, collect, proxy, server, sleep, until } from "./lib.mjs";

const KEY = `streams-rec-${process.pid}`;
const ARGS = ["--redis-streams", "--recovery", "60000"];

// What a test opened, closed when the file ends even if the test failed half-way (a proxy or
// a reconnecting client left open keeps the process alive).
const opened = [];
after(() => {
  for (const o of opened) o.close();
});

describe("connection state recovery across servers (Redis Streams)", () => {
  let redis;
  const servers = {};
  before(async () => {
    redis = createClient({ url: REDIS });
    await redis.connect();
    servers.a = await server("shardcast", KEY, { args: ARGS });
    servers.b = await server("shardcast", KEY, { args: ARGS });
    servers.node = await server("node", KEY, { args: ARGS });
  });
  after(async () => {
    await redis?.quit();
  });

  // A client through a proxy to `from`, in room `room`, that has had one broadcast (so it
  // has an offset to come back with).
  async function member(from, room) {
    const p = await proxy(from.port);
    const s = io(p.url, {
      transports: ["websocket"],
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 50,
      randomizationFactor: 0,
    });
    opened.push(s);
    await new Promise((resolve, reject) => {
      s.once("connect", resolve);
      s.once("connect_error", reject);
    });
    assert.equal(await ack(s, "join", room), true);
    const first = new Promise((r) => s.once("warm", r));
    const publisher = await client(from.url);
    // The room's first broadcast may go before the join is seen everywhere: repeat.
    let got = false;
    first.then(() => (got = true));
    await until(async () => {
      await ack(publisher, "publish", room, "warm", 0);
      await sleep(30);
      return got;
    }, "a first broadcast");
    publisher.close();
    return { p, s };
  }

  // Cuts `s` and waits until its server has kept its session (the key the Node adapter and
  // shardcast use): the cluster then knows it left.
  async function cut(p, s) {
    const pid = s._pid;
    assert.ok(pid, "the server gave a private session id");
    const gone = new Promise((r) => s.once("disconnect", r));
    p.hold();
    p.cut();
    assert.equal(await gone, "transport close");
    await until(async () => (await redis.exists(`sio:session:${pid}`)) === 1, "the session kept");
    return pid;
  }

  for (const [from, to] of [
    ["a", "b"],
    ["a", "node"],
    ["node", "a"],
    ["b", "b"],
  ]) {
    test(`cut from ${from}, back on ${to}: same id and rooms, every missed packet once and in order, then live`, T, async () => {
      const room = `r-${from}-${to}`;
      const { p, s } = await member(servers[from], room);
      const before = await ack(s, "whoami");
      assert.deepStrictEqual(before.rooms, [room]);
      const got = collect(s, "m");
      const pubs = [await client(servers.a.url), await client(servers.b.url), await client(servers.node.url)];
      const witness = await client(servers.b.url);
      assert.equal(await ack(witness, "join", room), true);
      const seen = collect(witness, "m");
      await until(async () => {
        await ack(pubs[0], "publish", room, "m", "probe");
        await sleep(30);
        return seen.length > 0;
      }, "the witness in the room");
      await until(() => got.some((g) => g[0] === "probe"), "the probe");
      const probes = () => seen.filter((g) => g[0] === "probe").length;
      await until(() => got.filter((g) => g[0] === "probe").length === probes(), "every probe");
      got.length = 0;
      seen.length = 0;

      await cut(p, s);
      // While away: from every server, to its room, to its own id, binary.
      const sent = [];
      for (let i = 0; i < 9; i++) {
        const pub = pubs[i % 3];
        const n = `missed-${i}`;
        sent.push(n);
        if (i === 4) assert.equal(await ack(pub, "publish", before.id, "m", n), true);
        else if (i === 7) assert.equal(await ack(pub, "publish", room, "m", n, Buffer.from([1, 2, i])), true);
        else assert.equal(await ack(pub, "publish", room, "m", n), true);
      }
      // Every server has appended them (the witness has those to the room).
      await until(() => seen.length === 8, "the witness's copies", 5000);

      p.to(servers[to].port);
      const back = new Promise((r) => s.once("connect", r));
      p.release();
      await back;
      assert.equal(s.recovered, true, "the official client says it recovered");
      const after = await ack(s, "whoami");
      assert.equal(after.id, before.id);
      assert.deepStrictEqual(after.rooms, [room]);
      assert.equal(after.recovered, true);
      // Live traffic after it, from every server.
      for (let i = 0; i < 3; i++) {
        assert.equal(await ack(pubs[i], "publish", room, "m", `live-${i}`), true);
      }
      await until(() => got.length >= sent.length + 3, "missed and live packets");
      await sleep(200);
      const names = got.map((g) => g[0]);
      // Each publisher's in order; all of them, once.
      assert.deepStrictEqual([...names].sort(), [...sent, "live-0", "live-1", "live-2"].sort(), JSON.stringify(names));
      for (const k of [0, 1, 2]) {
        const mine = names.filter((n) => /\d+$/.exec(n) && Number(n.split("-")[1]) % 3 === k && n.startsWith("missed"));
        assert.deepStrictEqual(mine, sent.filter((n, i) => i % 3 === k), `publisher ${k}`);
      }
      // The missed ones before the live ones.
      assert.ok(names.slice(0, sent.length).every((n) => n.startsWith("missed")), JSON.stringify(names));
      const bin = got.find((g) => g[0] === "missed-7");
      assert.ok(Buffer.isBuffer(bin[1]) && bin[1].equals(Buffer.from([1, 2, 7])), "binary replayed as binary");
      s.close();
      p.close();
      for (const c of [...pubs, witness]) c.close();
    });
  }

  // Our restore answers only once what the stream had up to its last read has been
  // delivered here, and keeps what is delivered meanwhile: under a steady stream of
  // broadcasts from every server, the client that came back has exactly what a client that
  // never left has, each publisher's in order. (The Node adapter does not promise that, so
  // the client is only on shardcast servers here: a Node server delivers its own broadcasts
  // as soon as they are appended, before other servers' earlier entries, so its client's
  // last offset is not always its newest packet and a restore from it may repeat one.)
  for (const [from, to] of [
    ["a", "b"],
    ["b", "a"],
  ]) {
    test(`cut from ${from}, back on ${to} while every server broadcasts: nothing lost, nothing twice`, T, async () => {
      const room = `busy-${from}-${to}`;
      const { p, s } = await member(servers[from], room);
      const witness = await client(servers.b.url);
      assert.equal(await ack(witness, "join", room), true);
      const pubs = [await client(servers.a.url), await client(servers.b.url), await client(servers.node.url)];
      // Both in the room everywhere before the traffic starts.
      const ready = [collect(s, "ready"), collect(witness, "ready")];
      await until(async () => {
        await ack(pubs[2], "publish", room, "ready");
        await sleep(30);
        return ready.every((r) => r.length > 0);
      }, "both in the room");
      const got = collect(s, "s");
      const seen = collect(witness, "s");
      let running = true;
      const loops = pubs.map(async (pub, k) => {
        for (let i = 0; running; i++) {
          pub.emit("publish", room, "s", k, i);
          await sleep(2);
        }
      });
      await sleep(150);
      await cut(p, s);
      await sleep(150);
      p.to(servers[to].port);
      const back = new Promise((r) => s.once("connect", r));
      p.release();
      await back;
      assert.equal(s.recovered, true);
      await sleep(300);
      running = false;
      await Promise.all(loops);
      // Every publish has reached the witness, then the same count the client.
      const count = () => seen.length;
      let last = -1;
      await until(async () => {
        const now = count();
        const stable = now === last;
        last = now;
        await sleep(100);
        return stable;
      }, "the witness's count settled", 10000);
      await until(() => got.length >= seen.length, `the client's copies (${got.length} of ${seen.length})`, 5000);
      await sleep(200);
      const key = ([k, i]) => `${k}:${i}`;
      assert.deepStrictEqual([...got.map(key)].sort(), [...seen.map(key)].sort(), "the same packets, once each");
      for (const k of [0, 1, 2]) {
        const mine = got.filter((g) => g[0] === k).map((g) => g[1]);
        assert.deepStrictEqual(mine, [...mine].sort((x, y) => x - y), `publisher ${k} in order`);
      }
      assert.ok(got.length > 100, `traffic while it was away (${got.length})`);
      s.close();
      p.close();
      for (const c of [...pubs, witness]) c.close();
    });
  }

  test("a client that left on purpose, an unknown pid or a wrong offset gets a new session", T, async () => {
    const { p, s } = await member(servers.a, "left");
    const before = await ack(s, "whoami");
    const pid = s._pid;
    const offset = s._lastOffset;
    // Closed on purpose (a DISCONNECT, then the WebSocket closed), through the proxy.
    s.close();
    await sleep(300);
    p.close();
    assert.equal(await redis.exists(`sio:session:${pid}`), 0, "no session kept for a manual disconnect");
    for (const auth of [{ pid, offset }, { pid: "AAAAAAAAAAAAAAAAAAAA", offset }, { pid, offset: "1-0" }, { pid, offset: "nope" }]) {
      const c = io(servers.b.url, { transports: ["websocket"], forceNew: true, reconnection: false, auth });
      await new Promise((resolve, reject) => {
        c.once("connect", resolve);
        c.once("connect_error", reject);
      });
      const w = await ack(c, "whoami");
      assert.notEqual(w.id, before.id);
      assert.equal(w.recovered, false);
      assert.deepStrictEqual(w.rooms, []);
      c.close();
    }
  });

  test("a session is restored once", T, async () => {
    const { p, s } = await member(servers.a, "once");
    const before = await ack(s, "whoami");
    const pid = await cut(p, s);
    const offset = s._lastOffset;
    s.close();
    p.close();
    const first = io(servers.b.url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { pid, offset } });
    await new Promise((r) => first.once("connect", r));
    assert.equal((await ack(first, "whoami")).id, before.id);
    const second = io(servers.node.url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { pid, offset } });
    await new Promise((r) => second.once("connect", r));
    const w = await ack(second, "whoami");
    assert.notEqual(w.id, before.id);
    assert.equal(w.recovered, false);
    first.close();
    second.close();
  });
});

// Live sessions (`--recovery-live-sessions`) and a half-open connection: the client's
// connection to a breaks without a knowing (a sees nothing until its ping timeout), the
// client comes back on b and is recovered there from the live session, which b claims. When
// a times its socket out, it neither persists its stale copy nor touches b's; when the
// client later drops from b and comes back on a, it gets what it had on b.
describe("live sessions: a half-open connection and its old server", () => {
  const LIVE = ["--redis-streams", "--recovery", "60000", "--recovery-live-sessions", "--ping-interval", "500", "--ping-timeout", "500"];
  const key = `streams-live-${process.pid}`;
  let redis, a, b;
  before(async () => {
    redis = createClient({ url: REDIS });
    await redis.connect();
    a = await server("shardcast", key, { args: LIVE });
    b = await server("shardcast", key, { args: LIVE });
  });
  after(async () => {
    await redis?.quit();
  });

  test("recovered on b, a's timeout leaves b's session alone, and back on a with b's rooms", T, async () => {
    const p = await proxy(a.port);
    const s = io(p.url, { transports: ["websocket"], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 50 });
    opened.push(s);
    await new Promise((resolve, reject) => (s.once("connect", resolve), s.once("connect_error", reject)));
    const sid = s.id;
    assert.equal(await ack(s, "join", "on-a"), true);
    const publisher = await client(b.url);
    const got = collect(s, "news");
    await until(async () => {
      await ack(publisher, "publish", "on-a", "news", "first");
      await sleep(30);
      return got.length > 0;
    }, "a first broadcast");
    const pid = s._pid;
    await until(async () => (await redis.exists(`{sio:session:${pid}}:live`)) === 1, "the live session");

    // Half-open: a does not know. Meanwhile a broadcast the client misses.
    const gone = new Promise((r) => s.once("disconnect", r));
    p.sever();
    await gone;
    assert.equal(await ack(publisher, "publish", "on-a", "news", "missed"), true);
    p.to(b.port);
    await new Promise((r) => s.once("connect", r));
    assert.equal(s.recovered, true, "recovered on b from the live session");
    assert.equal(s.id, sid);
    await until(() => got.some((g) => g[0] === "missed"), "the missed broadcast");
    assert.equal(await ack(s, "join", "on-b"), true);
    const onB = await ack(s, "whoami");
    assert.deepEqual(onB.rooms, ["on-a", "on-b"]);

    // a's socket times out (ping 500 + 500 ms): it must not persist its stale copy.
    await sleep(2500);
    assert.equal(await redis.exists(`sio:session:${pid}`), 0, "a persisted nothing");
    assert.equal(await redis.hGet(`{sio:session:${pid}}:live`, "owner") !== null, true, "b's live session is there");

    // Dropped from b, back on a: b's rooms.
    const dropped = new Promise((r) => s.once("disconnect", r));
    p.cut();
    await dropped;
    await until(async () => (await redis.exists(`sio:session:${pid}`)) === 1, "b persisted it");
    p.to(a.port);
    await new Promise((r) => s.once("connect", r));
    assert.equal(s.recovered, true, "recovered on a");
    assert.equal(s.id, sid);
    const back = await ack(s, "whoami");
    assert.deepEqual(back.rooms, ["on-a", "on-b"]);
    // Left on purpose: nothing is kept (a new session next time, as without live sessions).
    await sleep(1200);
    assert.equal(await redis.exists(`{sio:session:${pid}}:live`), 1, "a writes its live session");
    s.close();
    await until(async () => (await redis.exists(`{sio:session:${pid}}:live`)) === 0, "the live session dropped");
    assert.equal(await redis.exists(`sio:session:${pid}`), 0);
    publisher.close();
    p.close();
  });
});

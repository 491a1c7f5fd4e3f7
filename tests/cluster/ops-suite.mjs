// The operations suite (defineOperations, run by operations.test.mjs for the classic
// protocol and sharded.test.mjs for the sharded one): every request/response operation of
// the adapter across a mixed cluster: two
// shardcast servers (--shards 2) and the official Node server with @socket.io/redis-adapter
// on one key, two clients on each, each operation asked from a client of every server
// (the demo app's "More events on /"): fetch-sockets, sockets-join / -leave,
// disconnect-room, server-side-emit with and without ack, all-rooms, publish-with-ack
// (broadcast acks), publish-volatile; and a server that stops answering makes requests time
// out instead of hanging.

import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { T, ack, client, collect, disconnected, reachesAll, server, sleep, until } from "./lib.mjs";

const KINDS = ["shardcast", "shardcast", "node"];

// The suite, for one protocol: `args` are the flags of both kinds of server (e.g.
// ["--redis-sharded"]), `redis` the Redis URL (default: the shared one), `allRoomsAcross`
// whether all-rooms covers every server (the classic protocol) or this one only (sharded).
export function defineOperations(label, { args = [], redis, allRoomsAcross = true, slowStop = true } = {}) {
describe(label, { concurrency: false }, () => {
  const key = `sc-ops-${process.pid}-${args.join("")}-${Math.random().toString(16).slice(2, 8)}`;
  let servers = [];
  let clients = []; // clients[i] = the clients of server i
  before(async () => {
    servers = [];
    for (const kind of KINDS) servers.push({ kind, ...(await server(kind, key, { args, redis: redis?.() })) });
    clients = [];
    for (const s of servers) clients.push([await client(s.url), await client(s.url)]);
  });
  const all = () => clients.flat();
  const ids = (list) => list.map((c) => c.id).sort();

  // Joins fresh clients (one per server) to `room`; returns them.
  async function members(room) {
    const list = [];
    for (const s of servers) list.push(await client(s.url));
    for (const c of list) assert.equal(await ack(c, "join", room), true);
    return list;
  }

  test("fetch-sockets from every server lists the members of every server", T, async () => {
    const room = "f";
    const m = await members(room);
    for (const c of m) {
      assert.deepStrictEqual(await ack(c, "fetch-sockets", room), ids(m), `asked on ${c.io.uri}`);
    }
  });

  test("sockets-join and sockets-leave from every server reach the sockets of every server", T, async () => {
    const m = await members("j");
    for (const [i, asker] of m.entries()) {
      const other = `joined-${i}`;
      assert.equal(await ack(asker, "sockets-join", "j", other), true);
      for (const c of m) {
        await until(async () => (await ack(c, "whoami")).rooms.includes(other), `${other} on ${c.io.uri}`);
      }
      // and a broadcast to the new room reaches them all (the room's sharded channel is
      // subscribed without holding up the join, as in the Node adapter: on a Redis Cluster
      // a first publish may come before it, so publish until all have one, each once)
      await reachesAll(asker, other, `to-${other}`, m);
      assert.equal(await ack(asker, "sockets-leave", "j", other), true);
      for (const c of m) {
        await until(async () => !(await ack(c, "whoami")).rooms.includes(other), `left ${other}`);
      }
    }
  });

  test("disconnect-room from every server disconnects the members of every server", T, async () => {
    for (const [i] of servers.entries()) {
      const room = `d-${i}`;
      const m = await members(room);
      const bystander = await client(servers[(i + 1) % servers.length].url);
      const gone = m.map(disconnected);
      assert.equal(await ack(m[i], "disconnect-room", room), true);
      await Promise.all(gone);
      assert.ok(bystander.connected, "a socket outside the room stays");
    }
  });

  test("server-side-emit reaches the sockets of the other servers, not of its own", T, async () => {
    for (const [i, own] of clients.entries()) {
      const got = all().map((c) => collect(c, "server-side"));
      assert.equal(await ack(own[0], "server-side-emit", `hello-${i}`, 1, { a: "é" }), true);
      await until(
        () => clients.every((list, j) => j === i || list.every((c) => got[all().indexOf(c)].length === 1)),
        "server-side at the other servers' sockets",
      );
      await sleep(200);
      for (const [j, list] of clients.entries()) {
        for (const c of list) {
          const g = got[all().indexOf(c)];
          if (j === i) assert.equal(g.length, 0, "not on the sender's server");
          else assert.deepStrictEqual(g, [[`hello-${i}`, 1, { a: "é" }]]);
        }
      }
      for (const c of all()) c.off("server-side");
    }
  });

  test("server-side-emit-with-ack gets one reply from each other server", T, async () => {
    for (const [i, own] of clients.entries()) {
      const r = await ack(own[0], "server-side-emit-with-ack", `ask-${i}`);
      assert.equal(r.error, null);
      assert.equal(r.responses.length, servers.length - 1, JSON.stringify(r));
      for (const reply of r.responses) assert.ok(reply.sockets >= 2, JSON.stringify(reply));
    }
  });

  test(allRoomsAcross ? "all-rooms from every server holds the rooms of every server" : "all-rooms is this server's rooms (the protocol has no such request)", T, async () => {
    const mine = [];
    for (const [i, list] of clients.entries()) {
      mine.push(`rooms-${i}`);
      assert.equal(await ack(list[1], "join", `rooms-${i}`), true);
    }
    for (const [i, list] of clients.entries()) {
      const rooms = await ack(list[0], "all-rooms");
      const expected = allRoomsAcross ? mine : [mine[i]];
      for (const r of expected) assert.ok(rooms.includes(r), `${r} in ${rooms}`);
      if (!allRoomsAcross) for (const r of mine.filter((_, j) => j !== i)) assert.ok(!rooms.includes(r), `${r} not in ${rooms}`);
      const ids = allRoomsAcross ? all() : list;
      for (const c of ids) assert.ok(rooms.includes(c.id), "socket ids are rooms");
      assert.deepStrictEqual(rooms, [...rooms].sort());
    }
  });

  test("publish-with-ack from every server collects every member's ack on every server", T, async () => {
    const m = await members("a");
    for (const c of m) c.on("question", (n, cb) => cb({ from: c.id, n }));
    for (const [i, asker] of m.entries()) {
      const r = await ack(asker, "publish-with-ack", "a", "question", i);
      assert.equal(r.error, null, JSON.stringify(r));
      assert.deepStrictEqual(r.responses.map((x) => x.from).sort(), ids(m));
      assert.ok(r.responses.every((x) => x.n === i));
    }
  });

  test("publish-with-ack reports a silent member of another server as a timeout", T, async () => {
    const m = await members("s");
    m[0].on("question", (cb) => cb("yes"));
    m[1].on("question", (cb) => cb("yes"));
    // m[2] (on the Node server) never answers
    const r = await ack(m[0], "publish-with-ack", "s", "question");
    assert.equal(r.error, "operation has timed out");
    assert.deepStrictEqual(r.responses, ["yes", "yes"]);
  });

  test("publish-volatile crosses servers", T, async () => {
    const m = await members("v");
    // A server subscribes to a room's channel (sharded) when the room appears, without
    // holding up the join's answer (as the Node adapter): a volatile publish is not
    // retried, so first make sure plain publishes to the room reach every member.
    await reachesAll(m[2], "v", "probe", m);
    const got = m.map((c) => collect(c, "vol"));
    assert.equal(await ack(m[2], "publish-volatile", "v", "vol", 7), true);
    await until(() => got.every((g) => g.length === 1), "volatile everywhere");
  });

  test("a server that stops answering: requests time out with the answers that came", { timeout: 30000, skip: !slowStop }, async () => {
    const node = servers[2];
    node.proc.kill("SIGSTOP");
    try {
      const started = Date.now();
      const r = await ack(clients[0][0], "server-side-emit-with-ack", "stalled");
      assert.match(r.error, /timeout reached: only 1 responses received out of 2/);
      assert.equal(r.responses.length, 1);
      assert.ok(Date.now() - started >= 4500, "waited the requests timeout");
    } finally {
      node.proc.kill("SIGCONT");
    }
  });
});
}

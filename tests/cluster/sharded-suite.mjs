// Sharded broadcasts across a mixed cluster (defineShardedBroadcasts, run by
// sharded.test.mjs on the shared Redis and redis-cluster.test.mjs on a Redis Cluster):
// two shardcast servers (--redis-sharded) and the official Node server, to one room (its
// own channel), to several rooms (the namespace channel), binary included, in order per
// publisher.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { T, ack, client, collect, reachesAll, server, until, sleep } from "./lib.mjs";

// Broadcasts across a mixed sharded cluster on `redis()` (the shared Redis when undefined);
// `args` name the protocol (the streams adapter carries the same messages: it runs this
// suite too).
export function defineShardedBroadcasts(label, redis, args = ["--redis-sharded"]) {
  describe(label, { concurrency: false }, () => {
    test("one room, several rooms, exceptions and binary reach every server's members once, in order", T, async () => {
      const key = `sc-sharded-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
      const servers = [];
      for (const kind of ["shardcast", "shardcast", "node"]) {
        servers.push(await server(kind, key, { args, redis: redis?.() }));
      }
      const members = [];
      for (const s of servers) members.push(await client(s.url), await client(s.url));
      for (const m of members) assert.equal(await ack(m, "join", "room"), true);
      // members[1], [3], [5] also in "vip"
      for (const i of [1, 3, 5]) assert.equal(await ack(members[i], "join", "vip"), true);
      const others = [await client(servers[0].url), await client(servers[2].url)];
      for (const o of others) assert.equal(await ack(o, "join", "other"), true);
      // The room channels are subscribed as the rooms are created: wait for them.
      await reachesAll(members[0], "room", "probe", members);
      await reachesAll(members[0], "vip", "probe-vip", [1, 3, 5].map((i) => members[i]));
      await reachesAll(members[0], "other", "probe-other", others);
      const got = members.map((m) => collect(m, "news"));
      const gotOthers = others.map((o) => collect(o, "news"));
      const publishers = [members[0], members[2], members[4]];
      for (let n = 0; n < 10; n++) {
        for (const [who, p] of publishers.entries()) p.emit("publish", "room", "news", who, n, Buffer.from([who, n]));
      }
      await until(() => got.every((g) => g.length === 30), "30 messages at every member");
      for (const g of got) {
        for (let who = 0; who < 3; who++) {
          const mine = g.filter((m) => m[0] === who);
          assert.deepStrictEqual(mine.map((m) => m[1]), [...Array(10).keys()], "order per publisher");
          for (const m of mine) assert.deepStrictEqual([...m[2]], [who, m[1]], "binary argument");
        }
      }
      // several rooms (the namespace channel): "vip" and "other"
      const multi = [...members, ...others].map((m) => collect(m, "multi"));
      assert.equal(await ack(members[4], "publish-with-ack", "vip", "multi", "x").then(() => true), true);
      await until(() => [1, 3, 5].every((i) => multi[i].length === 1), "the vip members");
      await sleep(200);
      assert.ok([0, 2, 4].every((i) => multi[i].length === 0), "not the others");
      assert.ok(gotOthers.every((g) => g.length === 0), "a socket outside the room gets nothing");
      // to one socket id (its own channel in dynamic-private mode, else the namespace
      // channel), from each kind of server to a member of each other server
      const direct = [...members, ...others].map((m) => collect(m, "direct"));
      const pairs = [[0, 3], [0, 5], [4, 1], [2, 4]];
      for (const [from, to] of pairs) members[from].emit("publish", members[to].id, "direct", from, to);
      await until(() => pairs.every(([, to]) => direct[to].length >= 1), "each addressed socket");
      await sleep(200);
      for (const [i, d] of direct.entries()) {
        const meant = pairs.filter(([, to]) => to === i).map(([from, to]) => [from, to]);
        assert.deepStrictEqual(d, meant, `socket ${i} gets exactly what was sent to its id`);
      }
    });
  });
}


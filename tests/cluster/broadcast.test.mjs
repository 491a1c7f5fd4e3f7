// Broadcasts across a mixed cluster on one Redis: shardcast servers (SHARDCAST, --shards 2)
// and the official Node server with @socket.io/redis-adapter (NODE_PEER), same key. Clients
// on every server join a room; a publish from a client of any server reaches the members on
// every server once, with binary arguments, in the publisher's order; `except` and another
// key's cluster are respected.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { T, ack, client, collect, start, until } from "./lib.mjs";

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

  test("three shardcast servers: each publish reaches every member once, and fetch-sockets sees all", T, async () => {
    const key = `sc-test-${process.pid}-three`;
    const urls = [await start("shardcast", key), await start("shardcast", key), await start("shardcast", key)];
    const members = [];
    for (const url of urls) members.push(await client(url), await client(url));
    for (const m of members) assert.deepStrictEqual(await ack(m, "join", "r3"), true);
    const got = members.map((m) => collect(m, "n3"));
    for (const [i, m] of members.entries()) m.emit("publish", "r3", "n3", i);
    await until(() => got.every((g) => g.length === members.length), "every publish at every member");
    for (const g of got) assert.deepStrictEqual(g.map((x) => x[0]).sort(), [...members.keys()]);
    const ids = members.map((m) => m.id).sort();
    for (const m of members) assert.deepStrictEqual(await ack(m, "fetch-sockets", "r3"), ids);
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

// The official @socket.io/redis-emitter (5.x, uid "emitter") publishing to a cluster of a
// shardcast server (--shards 2) and the official Node server on one key: emit (binary
// included), to / in / except, of(nsp), volatile, socketsJoin, socketsLeave,
// disconnectSockets and serverSideEmit reach the sockets of both servers.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { io } from "socket.io-client";
import { REDIS, T, ack, client, collect, disconnected, server, sleep, until } from "./lib.mjs";

describe("the official emitter", { concurrency: false }, () => {
  const key = `sc-emitter-${process.pid}`;
  let redis, emitter, servers, clients;
  before(async () => {
    redis = createClient({ url: REDIS });
    await redis.connect();
    emitter = new Emitter(redis, { key });
    servers = [await server("shardcast", key), await server("node", key)];
    clients = [];
    for (const s of servers) clients.push(await client(s.url), await client(s.url));
  });
  after(async () => {
    await redis.quit();
  });

  test("emit reaches every socket of / on every server, binary included", T, async () => {
    const got = clients.map((c) => collect(c, "from-emitter"));
    emitter.emit("from-emitter", 1, "two", Buffer.from([1, 2, 3]), { nested: [true, null] });
    await until(() => got.every((g) => g.length === 1), "every socket");
    for (const [g] of got) {
      assert.deepStrictEqual(g.slice(0, 2), [1, "two"]);
      assert.deepStrictEqual([...new Uint8Array(g[2])], [1, 2, 3]);
      assert.deepStrictEqual(g[3], { nested: [true, null] });
    }
  });

  test("to, in and except select rooms on every server", T, async () => {
    const [a, b, c, d] = clients;
    for (const s of [a, c]) assert.equal(await ack(s, "join", "er"), true);
    for (const s of [b, c]) assert.equal(await ack(s, "join", "ex"), true);
    const got = clients.map((s) => collect(s, "sel"));
    emitter.to("er").emit("sel", "to");
    emitter.in(["er", "ex"]).except("ex").emit("sel", "in-except");
    emitter.except("er").emit("sel", "except");
    await until(() => got[0].length === 2 && got[2].length === 1 && got[1].length === 1 && got[3].length === 1, "selected");
    await sleep(200);
    assert.deepStrictEqual(got[0], [["to"], ["in-except"]]);
    assert.deepStrictEqual(got[2], [["to"]]);
    assert.deepStrictEqual(got[1], [["except"]]);
    assert.deepStrictEqual(got[3], [["except"]]);
    emitter.volatile.to("er").emit("sel", "volatile");
    await until(() => got[0].length === 3 && got[2].length === 2, "volatile");
  });

  test("of(nsp) reaches that namespace only", T, async () => {
    const custom = [];
    for (const s of servers) {
      const c = io(`${s.url}/custom`, { transports: ["websocket"], forceNew: true, reconnection: false });
      await new Promise((r, j) => (c.on("connect", r), c.on("connect_error", j)));
      custom.push(c);
    }
    const gotCustom = custom.map((c) => collect(c, "ns"));
    const gotRoot = clients.map((c) => collect(c, "ns"));
    emitter.of("/custom").emit("ns", "custom");
    await until(() => gotCustom.every((g) => g.length === 1), "the /custom sockets");
    await sleep(200);
    assert.ok(gotRoot.every((g) => g.length === 0), "not on /");
    for (const c of custom) c.close();
  });

  test("socketsJoin and socketsLeave apply on every server", T, async () => {
    for (const s of clients) assert.equal(await ack(s, "join", "ej"), true);
    emitter.in("ej").socketsJoin(["ej2", "ej3"]);
    for (const s of clients) {
      await until(async () => {
        const rooms = (await ack(s, "whoami")).rooms;
        return rooms.includes("ej2") && rooms.includes("ej3");
      }, "joined");
    }
    emitter.in("ej").socketsLeave("ej2");
    for (const s of clients) {
      await until(async () => !(await ack(s, "whoami")).rooms.includes("ej2"), "left");
      assert.ok((await ack(s, "whoami")).rooms.includes("ej3"));
    }
  });

  test("serverSideEmit reaches every server's listeners", T, async () => {
    const got = clients.map((c) => collect(c, "server-side"));
    emitter.serverSideEmit("from-emitter", 42, "x");
    await until(() => got.every((g) => g.length === 1), "server-side on both servers");
    for (const g of got) assert.deepStrictEqual(g[0], ["from-emitter", 42, "x"]);
  });

  test("disconnectSockets disconnects the selected sockets of every server", T, async () => {
    const doomed = [await client(servers[0].url), await client(servers[1].url)];
    for (const s of doomed) assert.equal(await ack(s, "join", "ed"), true);
    const gone = doomed.map(disconnected);
    emitter.in("ed").disconnectSockets(true);
    await Promise.all(gone);
    assert.ok(clients.every((c) => c.connected), "the others stay");
  });
});

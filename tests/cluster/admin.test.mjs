// The admin UI across a mixed cluster: two shardcast servers and the official Node server
// (with @socket.io/admin-ui) on one Redis, each with --admin-ui and its own server id. One
// UI connection, to one server, sees every server's stats, every server's sockets, the
// sockets that connect anywhere, and its actions reach sockets on any server.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { T, ack, client, collect, server, until, disconnected } from "./lib.mjs";

describe("admin UI in a cluster", { concurrency: false }, () => {
  test("one UI sees and acts on shardcast and Node servers", T, async () => {
    const key = `sc-test-${process.pid}-admin`;
    const ui = (id) => ["--admin-ui", "--admin-ui-server-id", id];
    const a = await server("shardcast", key, { args: ui("sc-a") });
    const b = await server("shardcast", key, { args: ui("sc-b") });
    const c = await server("node", key, { args: ui("node-c") });
    const onB = await client(b.url);
    const onC = await client(c.url);
    const cId = onC.id;

    const admin = io(`${a.url}/admin`, { transports: ["websocket"], forceNew: true, reconnection: false });
    const stats = collect(admin, "server_stats");
    const all = collect(admin, "all_sockets");
    const connected = collect(admin, "socket_connected");
    const gone = collect(admin, "socket_disconnected");
    await new Promise((resolve, reject) => {
      admin.on("connect", resolve);
      admin.on("connect_error", reject);
    });
    try {
      await until(() => ["sc-a", "sc-b", "node-c"].every((id) => stats.some(([s]) => s.serverId === id)), "stats of all three servers", 8000);
      await until(() => all.length > 0, "all_sockets");
      const ids = all[0][0].map((s) => s.id);
      assert.ok(ids.includes(onB.id), "a socket of the other shardcast server");
      assert.ok(ids.includes(cId), "a socket of the Node server");

      // Once every server knows a UI is connected (each checks every 2 s), a socket that
      // connects anywhere is shown.
      await new Promise((r) => setTimeout(r, 2500));
      const lateB = await client(b.url);
      const lateC = await client(c.url);
      await until(() => connected.some(([s]) => s.id === lateB.id), "socket_connected from the other shardcast server");
      await until(() => connected.some(([s]) => s.id === lateC.id), "socket_connected from the Node server");

      // Actions reach every server.
      for (const s of [onB, onC, lateB]) assert.deepStrictEqual(await ack(s, "join", "room"), true);
      const got = [onB, onC, lateB].map((s) => collect(s, "hey"));
      admin.emit("emit", "/", "room", "hey", 42);
      await until(() => got.every((g) => g.length === 1), "the UI's emit at members on both kinds of server");
      assert.deepStrictEqual(got[1][0], [42]);
      admin.emit("_disconnect", "/", true, cId);
      await disconnected(onC);
      await until(() => gone.some(([n, id]) => n === "/" && id === cId), "socket_disconnected from the Node server");
    } finally {
      admin.disconnect();
    }
  });
});

// The demo app's "More events on /" (docs/demo-app.md) on one server: whoami, fetch-sockets,
// sockets-join / sockets-leave, publish-volatile, publish-with-ack (replies and the timeout),
// disconnect-room, server-side emits without a cluster, all-rooms. shardcast runs with
// --shards 4, so each operation spans shards; the Node peer answers the same.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, connectClient, emitAck, once, sleep } from "./harness.mjs";

const T = { timeout: 20000 };

async function crowd(t, server, n, mode = "websocket") {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await connectClient(server.url, mode, { t })).socket);
  return out;
}

describe("more events on /", { concurrency: true }, () => {
  test("whoami, fetch-sockets, sockets-join and sockets-leave", T, async (t) => {
    const server = await startServer({ args: ["--shards", "4"], t });
    const [a, b, c] = await crowd(t, server, 3, "polling");
    for (const s of [a, b]) assert.deepStrictEqual(await emitAck(s, 5000, "join", "src"), [true]);
    assert.deepStrictEqual(await emitAck(a, 5000, "join", "extra"), [true]);
    assert.deepStrictEqual(await emitAck(a, 5000, "whoami"), [
      { id: a.id, rooms: ["extra", "src"], recovered: false },
    ]);
    assert.deepStrictEqual(await emitAck(c, 5000, "fetch-sockets", "src"), [[a.id, b.id].sort()]);
    assert.deepStrictEqual(await emitAck(c, 5000, "sockets-join", "src", "dst"), [true]);
    const [whoB] = await emitAck(b, 5000, "whoami");
    assert.deepStrictEqual(whoB.rooms, ["dst", "src"]);
    assert.deepStrictEqual(await emitAck(c, 5000, "fetch-sockets", "dst"), [[a.id, b.id].sort()]);
    assert.deepStrictEqual(await emitAck(c, 5000, "sockets-leave", "dst", "src"), [true]);
    assert.deepStrictEqual((await emitAck(a, 5000, "whoami"))[0].rooms, ["dst", "extra"]);
    assert.deepStrictEqual(await emitAck(c, 5000, "fetch-sockets", "src"), [[]]);
  });

  test("all-rooms lists every room and socket id, sorted", T, async (t) => {
    const server = await startServer({ args: ["--shards", "4"], t });
    const socks = await crowd(t, server, 4);
    await emitAck(socks[0], 5000, "join", "zeta");
    await emitAck(socks[3], 5000, "join", "alpha");
    const [rooms] = await emitAck(socks[1], 5000, "all-rooms");
    assert.deepStrictEqual(rooms, ["alpha", "zeta", ...socks.map((s) => s.id)].sort());
  });

  test("publish-volatile reaches a ready member; publish-with-ack collects first ack args", T, async (t) => {
    const server = await startServer({ args: ["--shards", "4"], t });
    const [a, b, c] = await crowd(t, server, 3);
    for (const s of [a, b]) await emitAck(s, 5000, "join", "r");
    const got = once(a, "vol", 5000);
    assert.deepStrictEqual(await emitAck(c, 5000, "publish-volatile", "r", "vol", 1, "x"), [true]);
    assert.deepStrictEqual(await got, [1, "x"]);
    a.on("ask", (q, cb) => cb(`a:${q}`, "ignored"));
    b.on("ask", (q, cb) => cb(`b:${q}`));
    const [all] = await emitAck(c, 5000, "publish-with-ack", "r", "ask", "q1");
    assert.equal(all.error, null);
    assert.deepStrictEqual(all.responses.sort(), ["a:q1", "b:q1"]);
    // a member that never answers: the 2 s timeout, with the replies that came
    await emitAck(c, 5000, "join", "r");
    const started = Date.now();
    const [partial] = await emitAck(c, 8000, "publish-with-ack", "r", "ask", "q2");
    assert.equal(partial.error, "operation has timed out");
    assert.deepStrictEqual(partial.responses.sort(), ["a:q2", "b:q2"]);
    assert.ok(Date.now() - started >= 1900, "waited for the timeout");
  });

  test("disconnect-room acks, then disconnects the members", T, async (t) => {
    const server = await startServer({ args: ["--shards", "4"], t });
    const [a, b, c] = await crowd(t, server, 3);
    for (const s of [a, b]) await emitAck(s, 5000, "join", "gone");
    const reasons = [once(a, "disconnect", 5000), once(b, "disconnect", 5000)];
    assert.deepStrictEqual(await emitAck(c, 5000, "disconnect-room", "gone"), [true]);
    assert.deepStrictEqual((await Promise.all(reasons)).map((r) => r[0]), [
      "io server disconnect",
      "io server disconnect",
    ]);
    await sleep(100);
    assert.equal(c.connected, true);
    // the asker in the room gets its ack before it goes
    await emitAck(c, 5000, "join", "self");
    const mine = once(c, "disconnect", 5000);
    assert.deepStrictEqual(await emitAck(c, 5000, "disconnect-room", "self"), [true]);
    assert.equal((await mine)[0], "io server disconnect");
  });

  test("server-side emits without a cluster", T, async (t) => {
    const server = await startServer({ args: ["--shards", "4"], t });
    const [a] = await crowd(t, server, 1);
    assert.deepStrictEqual(await emitAck(a, 5000, "server-side-emit", "hello", 1), [true]);
    assert.deepStrictEqual(await emitAck(a, 5000, "server-side-emit-with-ack", "hello"), [
      { error: null, responses: [] },
    ]);
  });
});

// Connection state recovery (`serve --recovery MS`, docs/demo-app.md) with the official
// client, which implements it (`socket.recovered`): the engine is closed under a member of
// a room (the server sees `transport close`, the client reconnects by itself with its pid
// and last offset); what was published meanwhile, binary included, arrives once and in
// order, then live traffic; the socket keeps its id and rooms. A manual disconnect is not
// recovered. shardcast runs with --shards 4; the Node peer answers the same.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MODE_NAMES, startServer, connectClient, emitAck, once, waitFor, sleep } from "./harness.mjs";

const T = { timeout: 30000 };
const ARGS = ["--recovery", "10000", "--shards", "4"];

// The client hands the offset to listeners as one more argument (a string): dropped here.
function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => {
    assert.equal(typeof args[args.length - 1], "string", `${event} carries its offset`);
    got.push(args.slice(0, -1));
  });
  return got;
}

describe("connection state recovery", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    test(`a dropped client gets its id, rooms and missed events back (${mode})`, T, async (t) => {
      const server = await startServer({ args: ARGS, t });
      const { socket: a } = await connectClient(server.url, mode, {
        t,
        reconnection: true,
        // long enough for the publisher to send while it is away
        reconnectionDelay: 600,
        reconnectionDelayMax: 600,
        randomizationFactor: 0,
      });
      const { socket: b } = await connectClient(server.url, "websocket", { t });
      assert.equal(a.recovered, false);
      assert.deepStrictEqual(await emitAck(a, 5000, "join", "r1"), [true]);
      const news = record(a, "news");
      assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r1", "news", "before"), [true]);
      await waitFor(() => news.length === 1, 5000, "news before the drop");
      const id = a.id;

      const disconnected = once(a, "disconnect", 5000, "disconnect");
      const reconnected = once(a, "connect", 10000, "connect after the drop");
      reconnected.catch(() => {});
      a.io.engine.close();
      const [reason] = await disconnected;
      assert.ok(["transport close", "forced close"].includes(reason), reason);

      // While it is away.
      for (const v of ["m1", "m2"]) assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r1", "news", v), [true]);
      assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r1", "news", Buffer.from([1, 2, 3])), [true]);
      assert.deepStrictEqual(await emitAck(b, 5000, "publish-volatile", "r1", "news", "volatile"), [true]);
      assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r2", "news", "other room"), [true]);

      await reconnected;
      assert.equal(a.recovered, true, "socket.recovered");
      assert.equal(a.id, id, "same socket id");
      // The missed events were handed over before `connect`.
      assert.equal(news.length, 4, JSON.stringify(news));
      assert.deepStrictEqual(news.slice(0, 3), [["before"], ["m1"], ["m2"]]);
      assert.ok(Buffer.isBuffer(news[3][0]) && news[3][0].equals(Buffer.from([1, 2, 3])), String(news[3]));
      assert.deepStrictEqual(await emitAck(a, 5000, "whoami"), [{ id, rooms: ["r1"], recovered: true }]);

      // Live traffic follows, once.
      assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r1", "news", "after"), [true]);
      await waitFor(() => news.length === 5, 5000, "news after the restore");
      await sleep(100);
      assert.deepStrictEqual(news.slice(4), [["after"]]);
    });
  }

  test("a manual disconnect is not recovered", T, async (t) => {
    const server = await startServer({ args: ARGS, t });
    const { socket: a } = await connectClient(server.url, "websocket", { t });
    assert.deepStrictEqual(await emitAck(a, 5000, "join", "r1"), [true]);
    const id = a.id;
    a.disconnect();
    await sleep(100);
    const again = once(a, "connect", 5000, "connect again");
    a.connect();
    await again;
    assert.equal(a.recovered, false);
    assert.notEqual(a.id, id);
    assert.deepStrictEqual(await emitAck(a, 5000, "whoami"), [{ id: a.id, rooms: [], recovered: false }]);
  });
});

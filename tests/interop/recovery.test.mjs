// Connection state recovery (`serve --recovery MS`, docs/demo-app.md) with the official
// client, which implements it (`socket.recovered`): the engine is closed under a member of
// a room (the server sees `transport close`, the client reconnects by itself with its pid
// and last offset); what was published meanwhile, binary included, arrives once and in
// order, then live traffic; the socket keeps its id and rooms. A manual disconnect is not
// recovered. shardcast runs with --shards 4; the Node peer answers the same, but for a
// client that notices the drop first (its old connection still open on the server):
// shardcast takes the old socket over, the reference gives a new session (docs/protocol.md).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MODE_NAMES, serverCommand, startServer, connectClient, emitAck, once, waitFor, sleep } from "./harness.mjs";

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

  test("a client that notices the drop first takes its socket over (websocket)", T, async (t) => {
    const server = await startServer({ args: ARGS, t });
    const reference = serverCommand().some((a) => a.endsWith("server.js"));
    const { socket: a } = await connectClient(server.url, "websocket", {
      t,
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    });
    const { socket: b } = await connectClient(server.url, "websocket", { t });
    assert.deepStrictEqual(await emitAck(a, 5000, "join", "r1"), [true]);
    const news = record(a, "news");
    assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r1", "news", "before"), [true]);
    await waitFor(() => news.length === 1, 5000, "news before the drop");
    const id = a.id;
    // What the client's ping timeout does, but the WebSocket is left open, as a connection
    // whose network went away is on the server's side: the server has not noticed.
    const engine = a.io.engine;
    engine.transport.doClose = () => {};
    const reconnected = once(a, "connect", 10000, "connect after the drop");
    reconnected.catch(() => {});
    engine._onClose("ping timeout");
    // Published to the old connection, which nobody reads any more.
    assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r1", "news", "lost"), [true]);
    await reconnected;
    if (reference) {
      // socket.io keeps no session while the old connection is open: a new one.
      assert.equal(a.recovered, false);
      assert.notEqual(a.id, id);
      return;
    }
    assert.equal(a.recovered, true, "socket.recovered");
    assert.equal(a.id, id);
    await waitFor(() => news.length === 2, 5000, "the packet sent to the old connection");
    assert.deepStrictEqual(news, [["before"], ["lost"]]);
    assert.deepStrictEqual(await emitAck(a, 5000, "whoami"), [{ id, rooms: ["r1"], recovered: true }]);
  });
});

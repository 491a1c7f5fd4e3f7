// Multiplexed namespaces on one engine.io connection: "/" and "/custom" via
// the same Manager, "/nope" refused with "Invalid namespace".

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { MODES, MODE_NAMES, startServer, connectClient, track, collect, once, echo, sleep, assertSameWithBinary } from "./harness.mjs";

const T = { timeout: 20000 };

describe("namespaces", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    test(`"/" and "/custom" multiplexed on one connection (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      // io() without forceNew: the second call reuses the first call's Manager
      const a = track(io(server.url, { ...MODES[mode], reconnection: false, auth: { ns: "root", n: 1 } }));
      const engine = a.io.engine;
      const upgraded = mode === "upgrade" ? once(engine, "upgrade", 8000) : null;
      upgraded?.catch(() => {});
      const b = track(io(server.url + "/custom", { auth: { ns: "custom", list: [1, 2] } }));
      t.after(() => {
        a.disconnect();
        b.disconnect();
      });
      assert.equal(a.io, b.io, "both sockets must share one Manager");
      const [[authA], [authB]] = await Promise.all([once(a, "auth", 8000), once(b, "auth", 8000)]);
      assert.deepStrictEqual(authA, { ns: "root", n: 1 });
      assert.deepStrictEqual(authB, { ns: "custom", list: [1, 2] });
      assert.equal(a.connected, true);
      assert.equal(b.connected, true);
      assert.equal(a.io.engine, engine, "one engine.io connection");
      assert.equal(b.io.engine, engine);
      if (upgraded) {
        await upgraded;
        assert.equal(engine.transport.name, "websocket");
      } else {
        assert.equal(engine.transport.name, mode);
      }
      const sid = engine.id;
      assert.equal(typeof sid, "string");

      // echoes stay in their namespace
      const gotA = collect(a, "message-back");
      const gotB = collect(b, "message-back");
      a.emit("message", "to-root", 1);
      b.emit("message", "to-custom", { x: 2 });
      await sleep(0);
      const deadline = Date.now() + 5000;
      while ((gotA.length < 1 || gotB.length < 1) && Date.now() < deadline) await sleep(10);
      await sleep(200);
      assert.deepStrictEqual(gotA, [["to-root", 1]]);
      assert.deepStrictEqual(gotB, [["to-custom", { x: 2 }]]);

      // an unknown namespace is refused, on the same Manager
      const c = track(io(server.url + "/nope", { auth: { ns: "nope" } }));
      t.after(() => c.disconnect());
      assert.equal(c.io, a.io);
      const gotAuthC = collect(c, "auth");
      const [err] = await once(c, "connect_error", 8000);
      assert.ok(err instanceof Error);
      assert.equal(err.message, "Invalid namespace");
      assert.equal(c.connected, false);
      assert.equal(c.active, false, "a namespace refused by the server is not retried");
      assert.deepStrictEqual(gotAuthC, []);

      // the others keep working on the same connection
      assert.equal(a.connected, true);
      assert.equal(b.connected, true);
      assert.equal(a.io.engine.id, sid);
      assert.deepStrictEqual(await echo(a, 5000, "root-still-ok"), ["root-still-ok"]);
      assert.deepStrictEqual(await echo(b, 5000, "custom-still-ok"), ["custom-still-ok"]);
      assert.equal(await a.timeout(5000).emitWithAck("message-with-ack", "ack-ok"), "ack-ok");

      // disconnecting /custom leaves / working on the same connection
      const discB = once(b, "disconnect", 5000);
      b.disconnect();
      assert.equal((await discB)[0], "io client disconnect");
      await sleep(200);
      assert.equal(a.connected, true);
      assert.equal(a.io.engine.id, sid, "the engine.io connection must survive");
      assertSameWithBinary(await echo(a, 5000, "root-after-custom-left", Buffer.from([7])), [
        "root-after-custom-left",
        Buffer.from([7]),
      ]);
      assert.equal(await a.timeout(5000).emitWithAck("message-with-ack", "ack-after"), "ack-after");
    });

    test(`/custom alone: auth and echo (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      const { socket, auth } = await connectClient(server.url + "/custom", mode, { t, auth: { only: "custom" } });
      assert.deepStrictEqual(auth, { only: "custom" });
      assertSameWithBinary(await echo(socket, 5000, "c", 1, null, Buffer.from([1, 2])), ["c", 1, null, Buffer.from([1, 2])]);
      const { auth: none } = await connectClient(server.url + "/custom", mode, { t });
      assert.deepStrictEqual(none, {});
    });

    test(`unknown namespace alone is refused (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      const s = track(io(server.url + "/nope", { forceNew: true, reconnection: false, ...MODES[mode] }));
      t.after(() => s.disconnect());
      const [err] = await once(s, "connect_error", 8000);
      assert.equal(err.message, "Invalid namespace");
      assert.equal(s.connected, false);
      // the server is still fine afterwards
      const { socket } = await connectClient(server.url, mode, { t });
      assert.deepStrictEqual(await echo(socket, 5000, "fine"), ["fine"]);
    });
  }
});

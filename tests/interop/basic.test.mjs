// Connection + auth, message echo, acknowledgements, ordering — over each
// transport mode.

import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import {
  MODE_NAMES,
  startServer,
  connectClient,
  createSocket,
  collect,
  waitFor,
  emitAck,
  echo,
  once,
  sleep,
} from "./harness.mjs";

const T = { timeout: 20000 };

const AUTH = {
  token: "s3cr3t-tøken ✓",
  user: { id: 42, name: "alice", roles: ["a", "b"] },
  flag: true,
  ratio: 0.25,
  none: null,
};

const MIXED = [
  1,
  "two",
  true,
  false,
  null,
  3.5,
  -7,
  "",
  "ünïcødé ✓ 🚀 \"quotes\" \\ / \n newline",
  [1, "x", [null, { deep: [true] }]],
  { a: 1, b: { c: [1, 2, { d: "e" }] }, empty: {}, list: [] },
  2 ** 53 - 1,
];

describe("basic", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    describe(`basic over ${mode}`, { concurrency: true }, () => {
      let server;
      before(async () => {
        server = await startServer();
      });
      // the server is stopped by the harness at the end of the file

      test("auth payload is echoed back in the `auth` event", T, async (t) => {
        const { socket, auth } = await connectClient(server.url, mode, { t, auth: AUTH });
        assert.deepStrictEqual(auth, AUTH);
        assert.equal(socket.connected, true);
        assert.equal(typeof socket.id, "string");
        assert.ok(socket.id.length > 0);
      });

      test("no auth: the `auth` event carries {}", T, async (t) => {
        const { auth } = await connectClient(server.url, mode, { t });
        assert.deepStrictEqual(auth, {});
      });

      test("empty auth object: the `auth` event carries {}", T, async (t) => {
        const { auth } = await connectClient(server.url, mode, { t, auth: {} });
        assert.deepStrictEqual(auth, {});
      });

      test("handshake advertises socket.io v4 defaults", T, async (t) => {
        const { handshake } = await connectClient(server.url, mode, { t });
        assert.equal(typeof handshake.sid, "string");
        assert.ok(handshake.sid.length > 0);
        assert.equal(handshake.pingInterval, 25000);
        assert.equal(handshake.pingTimeout, 20000);
        assert.equal(handshake.maxPayload, 1000000);
        // a websocket-only session cannot upgrade; a polling session is offered websocket
        assert.deepStrictEqual(handshake.upgrades, mode === "websocket" ? [] : ["websocket"]);
      });

      test("`message` is echoed as `message-back` with mixed-type args", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const back = await echo(socket, 5000, ...MIXED);
        assert.deepStrictEqual(back, MIXED);
        // single and zero args too
        assert.deepStrictEqual(await echo(socket, 5000, "solo"), ["solo"]);
        assert.deepStrictEqual(await echo(socket, 5000), []);
      });

      test("`message-back` goes to the sender only", T, async (t) => {
        const a = (await connectClient(server.url, mode, { t })).socket;
        const b = (await connectClient(server.url, mode, { t })).socket;
        const gotB = collect(b, "message-back");
        assert.deepStrictEqual(await echo(a, 5000, "only-a", 1), ["only-a", 1]);
        await sleep(200);
        assert.deepStrictEqual(gotB, []);
      });

      test("`message-with-ack` is acked with the same args (callback form)", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const res = await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("no ack within 5000 ms")), 5000);
          socket.emit("message-with-ack", ...MIXED, (...args) => {
            clearTimeout(timer);
            resolve(args);
          });
        });
        assert.deepStrictEqual(res, MIXED);
        // with socket.timeout(): first callback arg is the (null) error
        assert.deepStrictEqual(await emitAck(socket, 5000, "message-with-ack", "x", 2, { y: [3] }), [
          "x",
          2,
          { y: [3] },
        ]);
        // zero args: empty ack
        assert.deepStrictEqual(await emitAck(socket, 5000, "message-with-ack"), []);
      });

      test("socket.timeout(ms).emitWithAck resolves with the first ack arg", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        assert.deepStrictEqual(await socket.timeout(5000).emitWithAck("message-with-ack", { hello: "world" }), {
          hello: "world",
        });
        assert.equal(await socket.timeout(5000).emitWithAck("message-with-ack", 7, "ignored"), 7);
        // also without .timeout()
        assert.deepStrictEqual(await socket.emitWithAck("message-with-ack", ["arr", 1]), ["arr", 1]);
      });

      test("emitWithAck of an event the server never acks rejects on timeout", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const back = once(socket, "message-back", 5000);
        const started = Date.now();
        await assert.rejects(socket.timeout(300).emitWithAck("message", "no-ack-please", 5), (err) => {
          assert.ok(err instanceof Error);
          assert.equal(err.message, "operation has timed out");
          return true;
        });
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 250, `rejected too early (${elapsed} ms)`);
        // the server did receive it (echoed it, without the ack callback) ...
        assert.deepStrictEqual(await back, ["no-ack-please", 5]);
        // ... and the connection is still fine
        assert.equal(socket.connected, true);
        assert.deepStrictEqual(await socket.timeout(5000).emitWithAck("message-with-ack", "after"), "after");
      });

      test("many messages and acks keep their order and pairing", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const got = collect(socket, "message-back");
        const N = 200;
        for (let i = 0; i < N; i++) socket.emit("message", i, `m${i}`);
        const acks = await Promise.all(
          Array.from({ length: 50 }, (_, i) => socket.timeout(8000).emitWithAck("message-with-ack", { i })),
        );
        assert.deepStrictEqual(
          acks,
          Array.from({ length: 50 }, (_, i) => ({ i })),
        );
        await waitFor(() => got.length >= N, 8000, `${N} message-back events`);
        await sleep(100);
        assert.deepStrictEqual(
          got,
          Array.from({ length: N }, (_, i) => [i, `m${i}`]),
        );
      });

      test("events emitted before/while connecting are delivered in order", T, async (t) => {
        // Emitted right away: buffered by the client until connected; in
        // upgrade mode the echoes also cross the polling -> websocket switch.
        const socket = createSocket(server.url, mode, { auth: { early: true } });
        t.after(() => socket.disconnect());
        const got = collect(socket, "message-back");
        const authP = once(socket, "auth", 8000);
        const upgraded = mode === "upgrade" ? once(socket.io.engine, "upgrade", 8000) : null;
        upgraded?.catch(() => {});
        const N = 100;
        for (let i = 0; i < N; i++) socket.emit("message", i);
        assert.deepStrictEqual((await authP)[0], { early: true });
        // keep sending while the upgrade is (probably) in progress
        for (let i = N; i < 2 * N; i++) {
          socket.emit("message", i);
          if (i % 10 === 0) await sleep(1);
        }
        if (upgraded) {
          await upgraded;
          assert.equal(socket.io.engine.transport.name, "websocket");
        }
        for (let i = 2 * N; i < 3 * N; i++) socket.emit("message", i);
        await waitFor(() => got.length >= 3 * N, 10000, `${3 * N} message-back events`);
        await sleep(100);
        assert.deepStrictEqual(
          got,
          Array.from({ length: 3 * N }, (_, i) => [i]),
        );
      });
    });
  }
});

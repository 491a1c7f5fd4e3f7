// The MessagePack parser (`serve --parser msgpack`, socket.io's `parser` option) with the
// official client configured with socket.io-msgpack-parser, over websocket, polling and
// polling-then-upgrade: the handshake auth, events, acks, binary of every kind (Buffer,
// Uint8Array, ArrayBuffer, nested, empty, large), rooms, broadcasts with acks, connection
// state recovery; every packet is one binary Engine.IO message (no attachments); a client
// with the default parser never gets a socket on such a server, which keeps serving the
// others.

import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import parser from "socket.io-msgpack-parser";
import {
  MODE_NAMES,
  startServer,
  connectClient,
  createSocket,
  emitAck,
  echo,
  once,
  waitFor,
  sleep,
  assertSameWithBinary,
} from "./harness.mjs";

const T = { timeout: 20000 };

/** Every Engine.IO message packet the client receives, as it came off the transport. */
function messages(socket) {
  const got = [];
  socket.io.engine.on("packet", (p) => {
    if (p.type === "message") got.push(p.data);
  });
  return got;
}

const isBinary = (d) => Buffer.isBuffer(d) || d instanceof ArrayBuffer || ArrayBuffer.isView(d);

function payloads() {
  return {
    scalars: ["text", 42, -7, 1.5, true, false, null, { a: [1, { b: "c" }] }, []],
    buffer: [Buffer.from([1, 2, 3, 4, 5])],
    typed: [new Uint8Array([0, 1, 2, 253, 254, 255])],
    arrayBuffer: [new Uint8Array([9, 8, 7, 6]).buffer],
    nested: [{ deep: { deeper: Buffer.from([0xde, 0xad]) } }, [Buffer.from([1]), "x", { y: [Buffer.alloc(0)] }]],
    many: [Array.from({ length: 20 }, (_, i) => Buffer.from([i]))],
    large: [randomBytes(200 * 1024), "tail"],
    unicode: ["héllo wörld ✓ 😀", { "ключ": "значение" }],
  };
}

describe("MessagePack parser", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    describe(`msgpack over ${mode}`, { concurrency: true }, () => {
      let server;
      before(async () => {
        server = await startServer({ args: ["--parser", "msgpack", "--shards", "2"] });
      });

      test("the handshake auth comes back, and every packet is one binary message", T, async (t) => {
        const { socket, auth } = await connectClient(server.url, mode, {
          t,
          parser,
          auth: { token: "t0k", n: [1, 2.5, null], nested: { ok: true } },
        });
        assert.deepStrictEqual(auth, { token: "t0k", n: [1, 2.5, null], nested: { ok: true } });
        const wire = messages(socket);
        const back = await echo(socket, 5000, "a", Buffer.from([1, 2]), { b: Buffer.from([3]) });
        assertSameWithBinary(back, ["a", Buffer.from([1, 2]), { b: Buffer.from([3]) }]);
        // One message for the event with two binaries: no attachments after it.
        assert.equal(wire.length, 1, `messages: ${wire.length}`);
        assert.ok(isBinary(wire[0]), `the packet came as ${typeof wire[0]}`);
      });

      for (const name of Object.keys(payloads())) {
        test(`message and message-with-ack round trip: ${name}`, T, async (t) => {
          const { socket } = await connectClient(server.url, mode, { t, parser });
          const args = payloads()[name];
          assertSameWithBinary(await echo(socket, 8000, ...args), args);
          assertSameWithBinary(await emitAck(socket, 8000, "message-with-ack", ...args), args);
        });
      }

      test("rooms, broadcasts and broadcasts with acks", T, async (t) => {
        const { socket: a } = await connectClient(server.url, mode, { t, parser });
        const { socket: b } = await connectClient(server.url, "websocket", { t, parser });
        const { socket: c } = await connectClient(server.url, "polling", { t, parser });
        for (const s of [a, b]) assert.deepStrictEqual(await emitAck(s, 5000, "join", "room"), [true]);
        const got = { a: [], b: [], c: [] };
        for (const [k, s] of Object.entries({ a, b, c })) s.on("news", (...x) => got[k].push(x));
        assert.deepStrictEqual(await emitAck(c, 5000, "publish", "room", "news", 1, Buffer.from([9])), [true]);
        await waitFor(() => got.a.length === 1 && got.b.length === 1, 5000, "news in the room");
        await sleep(100);
        assertSameWithBinary(got.a, [[1, Buffer.from([9])]]);
        assertSameWithBinary(got.b, [[1, Buffer.from([9])]]);
        assert.equal(got.c.length, 0, "not in the room");

        for (const [k, s] of Object.entries({ a, b })) s.on("ask", (q, ack) => ack(`${k}:${q}`));
        const [res] = await emitAck(c, 5000, "publish-with-ack", "room", "ask", "q");
        assert.equal(res.error, null);
        assert.deepStrictEqual(res.responses.sort(), ["a:q", "b:q"]);
        assert.deepStrictEqual(await emitAck(a, 5000, "whoami"), [{ id: a.id, rooms: ["room"], recovered: false }]);
      });

      test("a client with the default parser gets no socket; the others are served", T, async (t) => {
        const plain = createSocket(server.url, mode, {});
        t.after(() => plain.close());
        let connected = false;
        plain.on("connect", () => (connected = true));
        await sleep(1500);
        assert.equal(connected, false, "a default-parser client was connected");
        const { socket } = await connectClient(server.url, mode, { t, parser });
        assertSameWithBinary(await echo(socket, 5000, "still", Buffer.from([1])), ["still", Buffer.from([1])]);
      });
    });
  }

  test("connection state recovery: missed packets, binary included, with their offsets", T, async (t) => {
    const server = await startServer({ args: ["--parser", "msgpack", "--recovery", "10000", "--shards", "2"], t });
    const { socket: a } = await connectClient(server.url, "websocket", {
      t,
      parser,
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 500,
      randomizationFactor: 0,
    });
    const { socket: b } = await connectClient(server.url, "websocket", { t, parser });
    assert.deepStrictEqual(await emitAck(a, 5000, "join", "r"), [true]);
    const news = [];
    a.on("news", (...x) => {
      assert.equal(typeof x[x.length - 1], "string", "the offset is the last argument");
      news.push(x.slice(0, -1));
    });
    const id = a.id;
    const disconnected = once(a, "disconnect", 5000, "disconnect");
    const reconnected = once(a, "connect", 10000, "connect after the drop");
    reconnected.catch(() => {});
    a.io.engine.close();
    await disconnected;
    assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r", "news", "m1"), [true]);
    assert.deepStrictEqual(await emitAck(b, 5000, "publish", "r", "news", Buffer.from([1, 2, 3])), [true]);
    await reconnected;
    assert.equal(a.recovered, true, "socket.recovered");
    assert.equal(a.id, id);
    assertSameWithBinary(news, [["m1"], [Buffer.from([1, 2, 3])]]);
  });
});

// Engine.IO v3 clients: the official socket.io-client 2.x (npm alias socket.io-client-v2)
// against a server started with --allow-eio3 (socket.io's `allowEIO3`), over websocket,
// polling and polling-then-upgrade: the implicit `/`, socket ids as socket.io makes them
// for such clients, namespace queries as auth, events, acks and binary of every size, rooms
// and broadcasts shared with a v4 client, broadcasts with acks, connect errors, server
// disconnects, the client-driven heartbeat; without the flag such a client is refused.

import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import { startServer, connectClient, emitAck, once, sleep, track, closeSocket, assertSameWithBinary } from "./harness.mjs";

const require = createRequire(import.meta.url);
const ioV2 = require("socket.io-client-v2");

const T = { timeout: 20000 };
const MODES = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  upgrade: { transports: ["polling", "websocket"] },
};

/** A socket.io-client 2.x socket, closed when the test ends. */
function createV2(url, mode, opts = {}) {
  const socket = ioV2(url, { forceNew: true, reconnection: false, timeout: 5000, ...MODES[mode], ...opts });
  track(socket);
  return socket;
}

/**
 * Connects a 2.x client and resolves with { socket, auth } once `connect` and the server's
 * `auth` event came (and, in upgrade mode, the upgrade completed).
 */
async function connectV2(t, url, mode, opts = {}) {
  const socket = createV2(url, mode, opts);
  t.after(() => closeSocket(socket));
  const authP = once(socket, "auth", 5000, `${mode}: auth`);
  const failed = new Promise((_, reject) => {
    socket.once("connect_error", (e) => reject(new Error(`${mode}: connect_error: ${e.message ?? e}`)));
    socket.once("error", (e) => reject(new Error(`${mode}: error: ${JSON.stringify(e)}`)));
  });
  failed.catch(() => {});
  const upgraded = mode === "upgrade" ? once(socket.io.engine, "upgrade", 8000, "upgrade") : null;
  upgraded?.catch(() => {});
  await Promise.race([once(socket, "connect", 5000, `${mode}: connect`), failed]);
  const [auth] = await Promise.race([authP, failed]);
  if (upgraded) await upgraded;
  assert.equal(socket.io.engine.transport.name, mode === "polling" ? "polling" : "websocket");
  return { socket, auth };
}

/** socket.emit with an ack (2.x has no timeout()): resolves with the ack's arguments. */
function ackV2(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), 8000);
    socket.emit(event, ...args, (...res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

async function echoV2(socket, ...args) {
  const back = once(socket, "message-back", 8000, "message-back");
  socket.emit("message", ...args);
  return await back;
}

function payloads() {
  return {
    scalars: ["text", 42, -7, 1.5, true, false, null, { a: [1, { b: "c" }] }, []],
    unicode: ["é€😀 ключ", { "😀": "∑" }],
    buffer: [Buffer.from([1, 2, 3, 4, 5])],
    // Ten: the servers' limit per packet (socket.io-parser's maxAttachments, ours
    // max_attachments), as in binary.test.mjs.
    many: [Array.from({ length: 10 }, (_, i) => Buffer.from([i, 255 - i]))],
    nested: [{ deep: { deeper: Buffer.from([0xde, 0xad]) } }, [Buffer.from([1]), "x", { y: [Buffer.alloc(0)] }]],
    large: [randomBytes(150 * 1024), "x".repeat(120 * 1024) + "😀"],
  };
}

describe("socket.io-client 2.x (Engine.IO v3)", { concurrency: true }, () => {
  let server;
  before(async () => {
    server = await startServer({ args: ["--allow-eio3", "--shards", "2"] });
  });

  for (const mode of Object.keys(MODES)) {
    describe(`v2 over ${mode}`, { concurrency: true }, () => {
      test("connected to / without asking; its id is the engine's", T, async (t) => {
        const { socket, auth } = await connectV2(t, server.url, mode);
        assert.deepStrictEqual(auth, {});
        assert.equal(socket.id, socket.io.engine.id);
        const [me] = await ackV2(socket, "whoami");
        assert.deepStrictEqual(me, { id: socket.id, rooms: [], recovered: false });
        const [ids] = await ackV2(socket, "fetch-sockets", socket.id);
        assert.deepStrictEqual(ids, [socket.id]);
      });

      for (const name of Object.keys(payloads())) {
        test(`message and message-with-ack round trip: ${name}`, T, async (t) => {
          const { socket } = await connectV2(t, server.url, mode);
          const args = payloads()[name];
          assertSameWithBinary(await echoV2(socket, ...args), args);
          assertSameWithBinary(await ackV2(socket, "message-with-ack", ...args), args);
        });
      }

      test("a namespace's query is its auth; its id is <nsp>#<engine id>", T, async (t) => {
        const { socket, auth } = await connectV2(t, `${server.url}/custom`, mode, { query: { token: "x", n: 1 } });
        assert.deepStrictEqual(auth, { token: "x", n: "1" });
        assert.equal(socket.id, `/custom#${socket.io.engine.id}`);
        assertSameWithBinary(await echoV2(socket, "hi", Buffer.from([7])), ["hi", Buffer.from([7])]);
      });

      test("an unknown namespace is refused with an error event", T, async (t) => {
        const socket = createV2(`${server.url}/nope`, mode);
        t.after(() => closeSocket(socket));
        const [err] = await once(socket, "error", 5000, "error");
        assert.deepStrictEqual(err, { message: "Invalid namespace" });
      });

      test("rooms and broadcasts reach v2 and v4 clients alike", T, async (t) => {
        const { socket: old } = await connectV2(t, server.url, mode);
        const { socket: cur } = await connectClient(server.url, mode, { t });
        for (const s of [old, cur]) assert.deepStrictEqual(await ackV2(s, "join", `mixed-${mode}`), [true]);
        const [mine] = await ackV2(old, "whoami");
        assert.deepStrictEqual(mine.rooms, [`mixed-${mode}`]);
        const args = ["news", "é😀", Buffer.from([1, 2, 3]), { b: Buffer.from([4]) }];
        const got = [once(old, "news", 5000, "v2 news"), once(cur, "news", 5000, "v4 news")];
        assert.deepStrictEqual(await emitAck(cur, 5000, "publish", `mixed-${mode}`, ...args), [true]);
        for (const g of got) assertSameWithBinary(await g, args.slice(1));
        // a broadcast with acks: the v2 member answers it
        old.on("ask", (q, cb) => cb(`old:${q}`));
        cur.on("ask", (q, cb) => cb(`cur:${q}`));
        const [all] = await ackV2(old, "publish-with-ack", `mixed-${mode}`, "ask", "q");
        assert.equal(all.error, null);
        assert.deepStrictEqual(all.responses.sort(), ["cur:q", "old:q"]);
        assert.deepStrictEqual(await ackV2(old, "leave", `mixed-${mode}`), [true]);
      });

      test("disconnect-me: the client sees io server disconnect", T, async (t) => {
        const { socket } = await connectV2(t, server.url, mode);
        const gone = once(socket, "disconnect", 5000, "disconnect");
        socket.emit("disconnect-me");
        assert.deepStrictEqual(await gone, ["io server disconnect"]);
      });
    });
  }

  test("the client pings and the server answers: the connection outlives many ping timeouts", T, async (t) => {
    const fast = await startServer({ args: ["--allow-eio3", "--ping-interval", "300", "--ping-timeout", "200"], t });
    for (const mode of Object.keys(MODES)) {
      const { socket } = await connectV2(t, fast.url, mode);
      let pongs = 0;
      socket.io.on("pong", () => pongs++);
      let dropped = null;
      socket.on("disconnect", (r) => (dropped = r));
      await sleep(1600);
      assert.equal(dropped, null, `${mode}: disconnected (${dropped})`);
      assert.ok(pongs >= 3, `${mode}: ${pongs} pongs`);
      assertSameWithBinary(await echoV2(socket, "still"), ["still"]);
    }
  });

  test("without --allow-eio3 a v2 client is refused (code 5)", T, async (t) => {
    const strict = await startServer({ t });
    const res = await fetch(`${strict.url}/socket.io/?EIO=3&transport=polling`);
    assert.equal(res.status, 400);
    assert.deepStrictEqual(await res.json(), { code: 5, message: "Unsupported protocol version" });
    const socket = createV2(strict.url, "polling");
    t.after(() => closeSocket(socket));
    await once(socket, "connect_error", 5000, "connect_error");
    assert.equal(socket.connected, false);
  });
});

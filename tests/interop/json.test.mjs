// JSON as JavaScript writes it: what socket.io-client sends for a truncated emoji, a deeply
// nested argument and Infinity comes back as the reference server answers it; over each
// transport mode. Also the raw wire: packets written straight to the engine with number
// spellings and escapes that JSON.stringify never makes (1e999999, -0, 2^53 + 1, \uD83D)
// get the reference's exact answer bytes.

import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import { MODE_NAMES, startServer, connectClient, emitAck, once } from "./harness.mjs";

const T = { timeout: 20000 };

function nested(depth, leaf) {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { k: v, i };
  return v;
}

/** Writes `packet` (a Socket.IO packet as text) to the engine; resolves with the next raw
 * Socket.IO packet the server sends that starts with `prefix`. */
function rawExchange(socket, packet, prefix) {
  const engine = socket.io.engine;
  const got = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer starting with ${prefix} to ${packet}`)), 5000);
    const onPacket = (p) => {
      if (p.type === "message" && typeof p.data === "string" && p.data.startsWith(prefix)) {
        clearTimeout(timer);
        engine.off("packet", onPacket);
        resolve(p.data);
      }
    };
    engine.on("packet", onPacket);
  });
  engine.write(packet);
  return got;
}

describe("json", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    describe(`json over ${mode}`, { concurrency: true }, () => {
      let server;
      before(async () => {
        server = await startServer();
      });

      test("a truncated emoji (lone surrogate) is acked back unchanged", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const half = "😀".slice(0, 1);
        assert.equal(half, "\ud83d");
        const [back] = await emitAck(socket, 5000, "message-with-ack", half);
        assert.equal(back, "\ud83d");
        const mixed = ["a\udc00b", { text: "hi 😀".slice(0, 4), ok: "😀" }, "\ud83d\ud83d\ude00"];
        assert.deepStrictEqual(await emitAck(socket, 5000, "message-with-ack", ...mixed), mixed);
        // and in the message echo and in the auth payload
        const echoed = once(socket, "message-back", 5000);
        socket.emit("message", half, 1);
        assert.deepStrictEqual(await echoed, [half, 1]);
      });

      test("auth with a lone surrogate comes back in the auth event", T, async (t) => {
        const auth = { name: "😀".slice(0, 1) };
        const { auth: back } = await connectClient(server.url, mode, { t, auth });
        assert.deepStrictEqual(back, auth);
      });

      test("an argument nested 200 deep (arrays and objects) is acked back", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const deep = nested(200, "leaf");
        const arrays = JSON.parse("[".repeat(200) + "]".repeat(200));
        const [a, b] = await emitAck(socket, 5000, "message-with-ack", deep, arrays);
        assert.deepStrictEqual(a, deep);
        assert.deepStrictEqual(b, arrays);
      });

      test("Infinity, -0 and unsafe integers come back as the reference sends them", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        // JSON.stringify sends Infinity and NaN as null
        const back = await emitAck(socket, 5000, "message-with-ack", Infinity, -Infinity, NaN, -0, 2 ** 53 + 2, 1e21, 1.5e-7);
        assert.deepStrictEqual(back, [null, null, null, 0, 2 ** 53 + 2, 1e21, 1.5e-7]);
      });

      test("raw wire: number spellings and escapes get the reference's bytes", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        // (Socket.IO packets: the engine adds the message type `4`)
        const cases = [
          ['291["message-with-ack",1e999999]', '391[null]'],
          ['292["message-with-ack","\\ud83d"]', '392["\\ud83d"]'],
          ['293["message-with-ack",-0,9007199254740993,1E2,1.0,-1e-999,12345678901234567890]', '393[0,9007199254740992,100,1,0,12345678901234567000]'],
          ['294["message-with-ack",1e21,1e-7,0.000001,123.456e1]', '394[1e+21,1e-7,0.000001,1234.56]'],
          ['295["message-with-ack",{"a":"\\ude00","b":[1.5e400]}]', '395[{"a":"\\ude00","b":[null]}]'],
          ['296["message-with-ack","\\u0041\\/\\ud83d\\ude00"]', '396["A/😀"]'],
        ];
        for (const [sent, want] of cases) {
          assert.equal(await rawExchange(socket, sent, want.slice(0, 3)), want, sent);
        }
      });
    });
  }
});

// Binary round trips (Buffer / Uint8Array / ArrayBuffer, top-level and
// nested, several attachments) via message/message-back and message-with-ack.

import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  MODE_NAMES,
  startServer,
  connectClient,
  emitAck,
  echo,
  normalizeBinary,
  assertSameWithBinary,
} from "./harness.mjs";

const T = { timeout: 20000 };

function payloads() {
  const u8 = new Uint8Array([0, 1, 2, 253, 254, 255]);
  const ab = new Uint8Array([9, 8, 7, 6]).buffer;
  return {
    single: [Buffer.from([1, 2, 3, 4, 5])],
    typed: [u8],
    arrayBuffer: [ab],
    mixed: [
      "text",
      Buffer.from("hello binary"),
      42,
      { nested: { deeper: Buffer.from([0xde, 0xad, 0xbe, 0xef]) }, label: "n" },
      [Buffer.from([1]), "between", new Uint8Array([2, 2]), { x: [Buffer.from([3, 3, 3])] }],
      null,
    ],
    // every byte value, plus an empty buffer
    edges: [Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.alloc(0), { e: Buffer.alloc(0) }],
    // many attachments in one packet: 10 is the most the reference server
    // (socket.io-parser's default maxAttachments) accepts in one packet
    many: [{ parts: Array.from({ length: 9 }, (_, i) => Buffer.from([i, i + 1, i + 2])) }, Buffer.from("10th")],
    // a largish attachment (well below the default 1 MB max payload even base64-encoded)
    large: [randomBytes(200 * 1024), "tail"],
  };
}

function assertAllBinaryAreBinary(actual, expected) {
  // normalizeBinary turns each binary into {$binary: hex}; if the server sent
  // e.g. a JSON array of numbers or a base64 string the comparison fails.
  assertSameWithBinary(actual, expected);
}

describe("binary", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    describe(`binary over ${mode}`, { concurrency: true }, () => {
      let server;
      before(async () => {
        server = await startServer();
      });

      for (const [name] of Object.entries(payloads())) {
        test(`message/message-back round trip: ${name}`, T, async (t) => {
          const { socket } = await connectClient(server.url, mode, { t });
          const args = payloads()[name];
          const back = await echo(socket, 8000, ...args);
          assert.equal(back.length, args.length);
          assertAllBinaryAreBinary(back, args);
        });

        test(`message-with-ack round trip: ${name}`, T, async (t) => {
          const { socket } = await connectClient(server.url, mode, { t });
          const args = payloads()[name];
          const res = await emitAck(socket, 8000, "message-with-ack", ...args);
          assert.equal(res.length, args.length);
          assertAllBinaryAreBinary(res, args);
        });
      }

      test("binary and text packets interleave in order", T, async (t) => {
        const { socket } = await connectClient(server.url, mode, { t });
        const got = [];
        socket.on("message-back", (...a) => got.push(a));
        const sent = [];
        for (let i = 0; i < 40; i++) {
          const args = i % 3 === 0 ? [i, Buffer.from([i, 255 - i])] : i % 3 === 1 ? [i, "text"] : [i, { b: Buffer.from([i]) }];
          sent.push(args);
          socket.emit("message", ...args);
        }
        const deadline = Date.now() + 8000;
        while (got.length < sent.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        assert.deepStrictEqual(normalizeBinary(got), normalizeBinary(sent));
      });
    });
  }
});

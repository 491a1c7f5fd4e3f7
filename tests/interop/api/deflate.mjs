// Per-message deflate with the official client: the server under test runs with
// per_message_deflate on (threshold 64 bytes); socket.io-client's Node websocket
// transport (the `ws` package) offers permessage-deflate by default and compresses
// its own messages from 1024 bytes.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { connect, closeAll, op, expectDelivery, uid } from "./_support.mjs";

describe("per-message deflate with the official client", () => {
  const clients = [];
  after(() => closeAll(clients));

  test("the extension is negotiated", async (t) => {
    const c = await connect("/", { transport: "websocket", t });
    // `ws` lists the negotiated extensions by name.
    assert.match(String(c.socket.io.engine.transport.ws.extensions), /permessage-deflate/);
  });

  test("large messages both ways, compressed, arrive intact and in order", async (t) => {
    const a = await connect("/", { transport: "websocket", t });
    const b = await connect("/", { transport: "websocket", t });
    const c = await connect("/", { transport: "polling", t });
    // Several large, repetitive and non-repetitive payloads: the client compresses them
    // (over 1024 bytes), the server inflates, re-encodes the broadcast once and compresses it
    // once for both websocket recipients; the polling one gets it plain.
    for (let i = 0; i < 5; i++) {
      const event = uid("zip");
      const big = "chunk-" + String(i).repeat(5000) + Math.random().toString(36).repeat(200);
      await op(a, { from: "io", to: [b.id, c.id, a.id], event, args: [big, { i }] }, big);
      await expectDelivery({ requester: a, event, recipients: [a, b, c], others: [], args: [big, { i }] });
    }
  });

  test("binary attachments are never compressed and arrive byte-identical", async (t) => {
    const a = await connect("/", { transport: "websocket", t });
    const b = await connect("/", { transport: "websocket", t });
    const bytes = Buffer.alloc(4096, 7);
    const event = uid("bin");
    // Without `args` in the spec, the playground re-emits the op's own arguments.
    await op(a, { from: "io", to: [b.id], event }, bytes, "x".repeat(2000));
    await expectDelivery({ requester: a, event, recipients: [b], others: [], args: [bytes, "x".repeat(2000)] });
  });
});

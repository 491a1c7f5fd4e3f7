// Per-socket middlewares (`socket.use`) and their `error` handler, and the
// catch-all listeners `on_any` (incoming) and `on_any_outgoing` (the socket's
// own emits and the broadcasts it receives).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { call, connect, connectMany, dynName, expectDelivery, got, once, op, sleep, uid, waitFor } from "./_support.mjs";

for (const mode of ["websocket", "polling"]) {
  describe(`per-socket middleware and catch-all listeners (${mode})`, () => {
    test("a refused event: the client gets `refused`, the handler never runs, no ack", async (t) => {
      const c = await connect("/", { transport: mode, t });
      const refused = once(c.socket, "refused");
      // With an ack callback: a refused event is never acknowledged.
      const acked = c.socket.timeout(500).emitWithAck("forbidden", { secret: 1 }).then(
        () => "acked",
        () => "no ack",
      );
      const [message] = await refused;
      assert.equal(typeof message, "string");
      assert.match(message, /forbidden/);
      assert.match(message, /refused by the middleware/);
      assert.equal(await acked, "no ack");
      // Without one.
      c.socket.emit("forbidden");
      await once(c.socket, "refused");
      assert.equal(await call(c, "forbidden-ran"), 0, "the forbidden handler never ran");
      assert.deepStrictEqual(got(c, "forbidden-handled"), []);
      assert.equal(got(c, "refused").length, 2);
      // The socket keeps working.
      const back = once(c.socket, "message-back");
      c.socket.emit("message", "still here");
      assert.deepStrictEqual(await back, ["still here"]);
      assert.equal(c.socket.connected, true);
    });

    test("a refused event has no effect on other sockets", async (t) => {
      const [A, B] = await connectMany(2, mode, { t });
      const refused = once(A.socket, "refused");
      A.socket.emit("forbidden");
      await refused;
      await sleep(50);
      assert.deepStrictEqual(got(B, "refused"), []);
      assert.equal(await call(B, "forbidden-ran"), 0);
    });

    test("on_any counts every incoming event exactly once (acks excluded)", async (t) => {
      const [c, R] = await connectMany(2, mode, { t });
      for (let i = 0; i < 5; i++) c.socket.emit("message", i);
      await call(c, "whoami"); // 6 so far
      // An ack the client sends for a broadcast with acks is not an event.
      c.socket.on("q", (x, cb) => cb(x));
      const res = await call(R, "op-ack", { to: c.id, event: "q", args: [1], timeout_ms: 3000 });
      assert.equal(res.ok, true);
      assert.equal(await call(c, "count"), 7, "5 messages + whoami + count");
      assert.equal(await call(c, "count"), 8);
      assert.equal(await call(R, "count"), 2, "op-ack + count on the requester");
    });

    test(
      "on_any also sees the events a middleware refuses (socket.io runs onAny before socket.use)",
      {},
      async (t) => {
      // socket.io's Socket#onevent calls the catch-all listeners, then dispatch() runs the
      // middlewares: an event refused by socket.use is still seen by onAny.
      const c = await connect("/", { transport: mode, t });
      const refused = once(c.socket, "refused");
      c.socket.emit("forbidden");
      await refused;
      assert.equal(await call(c, "count"), 2, "forbidden + count");
      },
    );

    test("on_any_outgoing sees the socket's own emits and the broadcasts it receives", async (t) => {
      // A namespace of its own: namespace-wide emits of concurrently running files do not
      // reach it.
      const [A, B] = await connectMany(2, mode, { nsp: dynName(), t });
      const room = uid("out");
      await call(A, "join", room);
      const back = once(A.socket, "message-back");
      A.socket.emit("message", 1); // own emit: message-back
      await back;
      const e1 = uid("out-room");
      await op(B, { to: room, event: e1, args: [] }); // broadcast received by A
      const e2 = uid("out-not-for-a");
      await op(B, { except: room, event: e2, args: [] }); // broadcast A does not receive
      const e3 = uid("out-ns");
      await op(B, { to: [room, B.id], event: e3, args: [] });
      await waitFor(() => got(A, e3).length === 1, `${e3} at A`);
      const refusedP = once(A.socket, "refused");
      A.socket.emit("forbidden"); // on_error emits `refused`
      await refusedP;
      const e4 = uid("out-self");
      await op(A, { from: "self", event: e4, args: [] }); // socket.emit from an op
      await expectDelivery({ requester: B, event: e1, recipients: [A], others: [B] });
      const out = await call(A, "outgoing");
      const mine = out.filter((e) => !e.startsWith("marker-"));
      assert.deepStrictEqual(mine, ["welcome", "message-back", e1, e3, "refused", e4]);
      // Acks sent back are not outgoing events; B saw its own broadcasts as recipient only.
      const outB = (await call(B, "outgoing")).filter((e) => !e.startsWith("marker-"));
      assert.deepStrictEqual(outB, ["welcome", e2, e3]);
    });
  });
}

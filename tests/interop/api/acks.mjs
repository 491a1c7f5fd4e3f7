// Broadcasts with acknowledgements (`io.timeout(ms).emit(..., (err, responses))`,
// here `emit_with_ack` of the broadcast operator) answered by official clients:
// every reply collected once per socket, the silent ones listed, zero
// recipients resolving at once.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MODES, call, connect, connectMany, expectDelivery, got, op, sorted, uid, waitFor } from "./_support.mjs";

/** Makes `c` answer `q` with x + 1 (and count what it was asked). */
function answer(c) {
  c.asked = [];
  c.socket.on("q", (x, cb) => {
    c.asked.push(x);
    cb(x + 1);
  });
}

/** Makes `c` listen to `q` but never call back. */
function ignore(c) {
  c.asked = [];
  c.socket.on("q", (x) => {
    c.asked.push(x);
  });
}

for (const mode of MODES) {
  describe(`broadcast acks (${mode})`, () => {
    test("three members answer: ok with exactly their three responses", async (t) => {
      const [R, A, B, C, D] = await connectMany(5, mode, { t });
      const room = uid("ackroom");
      for (const c of [A, B, C]) {
        answer(c);
        assert.equal(await call(c, "join", room), true);
      }
      answer(D); // not a member: must not be asked
      const started = Date.now();
      const res = await call(R, "op-ack", { to: room, event: "q", args: [41], timeout_ms: 3000 });
      assert.ok(Date.now() - started < 1500, "resolved once every member answered, not at the timeout");
      assert.deepStrictEqual(res, {
        ok: true,
        responses: sorted([A.id, B.id, C.id]).map((id) => [id, 42]),
        missing: [],
      });
      for (const c of [A, B, C]) assert.deepStrictEqual(c.asked, [41], `${c.id} asked once`);
      assert.deepStrictEqual(D.asked, []);
      assert.deepStrictEqual(got(R, "q"), []);
    });

    test("a member of two target rooms is asked once and answers once", async (t) => {
      const [R, A, B] = await connectMany(3, mode, { t });
      const r1 = uid("ack1");
      const r2 = uid("ack2");
      answer(A);
      answer(B);
      await call(A, "join", [r1, r2]);
      await call(B, "join", r2);
      const res = await call(R, "op-ack", { to: [r1, r2], event: "q", args: [1], timeout_ms: 3000 });
      assert.deepStrictEqual(res, { ok: true, responses: sorted([A.id, B.id]).map((id) => [id, 2]), missing: [] });
      assert.deepStrictEqual(A.asked, [1]);
    });

    test("one member never answers: not ok, missing lists exactly it, responses the others", async (t) => {
      const [R, A, B, S] = await connectMany(4, mode, { t });
      const room = uid("silent");
      answer(A);
      answer(B);
      ignore(S);
      for (const c of [A, B, S]) await call(c, "join", room);
      const started = Date.now();
      const res = await call(R, "op-ack", { to: room, event: "q", args: [10], timeout_ms: 400 });
      const elapsed = Date.now() - started;
      assert.deepStrictEqual(res, {
        ok: false,
        responses: sorted([A.id, B.id]).map((id) => [id, 11]),
        missing: [S.id],
      });
      assert.deepStrictEqual(S.asked, [10], "the silent member was asked");
      assert.ok(elapsed >= 350, `resolved after ${elapsed} ms, before the 400 ms timeout`);
    });

    test("zero recipients: ok at once with no response", async (t) => {
      const [R, A] = await connectMany(2, mode, { t });
      answer(A);
      const started = Date.now();
      const res = await call(R, "op-ack", { to: uid("empty"), event: "q", args: [1], timeout_ms: 3000 });
      assert.deepStrictEqual(res, { ok: true, responses: [], missing: [] });
      assert.ok(Date.now() - started < 1500, "did not wait for the timeout");
      assert.deepStrictEqual(A.asked, []);
    });

    test("socket.to(room) with acks leaves the requester out; io.to includes it", async (t) => {
      const [R, A, B] = await connectMany(3, mode, { t });
      const room = uid("ackself");
      for (const c of [R, A, B]) {
        answer(c);
        await call(c, "join", room);
      }
      let res = await call(R, "op-ack", { from: "socket", to: room, event: "q", args: [5], timeout_ms: 3000 });
      assert.deepStrictEqual(res, { ok: true, responses: sorted([A.id, B.id]).map((id) => [id, 6]), missing: [] });
      assert.deepStrictEqual(R.asked, []);
      res = await call(R, "op-ack", { to: room, event: "q", args: [7], timeout_ms: 3000 });
      assert.deepStrictEqual(res, { ok: true, responses: sorted([R.id, A.id, B.id]).map((id) => [id, 8]), missing: [] });
    });

    test("answers with binary arguments arrive byte-identical", async (t) => {
      const [R, A, B] = await connectMany(3, mode, { t });
      const room = uid("binack");
      for (const c of [A, B]) {
        c.socket.on("qb", (n, cb) => cb(Buffer.from([n, 0, 255]), "tail"));
        await call(c, "join", room);
      }
      const res = await call(R, "op-ack", { to: room, event: "qb", args: [7], timeout_ms: 3000 });
      assert.deepStrictEqual(res, {
        ok: true,
        responses: sorted([A.id, B.id]).map((id) => [id, { $hex: "0700ff" }, "tail"]),
        missing: [],
      });
    });

    test("a member that disconnects before answering is listed as missing", async (t) => {
      const [R, A, S] = await connectMany(3, mode, { t });
      const room = uid("gone");
      answer(A);
      S.socket.on("q", () => S.socket.disconnect());
      for (const c of [A, S]) await call(c, "join", room);
      const res = await call(R, "op-ack", { to: room, event: "q", args: [1], timeout_ms: 1500 });
      assert.deepStrictEqual(res, { ok: false, responses: [[A.id, 2]], missing: [S.id] });
    });

    test("broadcast acks awaited on a thread that is not a shard", async (t) => {
      const [R, A, B, S] = await connectMany(4, mode, { t });
      const room = uid("offshard");
      answer(A);
      answer(B);
      ignore(S);
      for (const c of [A, B]) await call(c, "join", room);
      let res = await call(R, "op-ack", { to: room, event: "q", args: [1], timeout_ms: 3000, thread: true });
      assert.deepStrictEqual(res, { ok: true, responses: sorted([A.id, B.id]).map((id) => [id, 2]), missing: [] });
      await call(S, "join", room);
      res = await call(R, "op-ack", { to: room, event: "q", args: [3], timeout_ms: 400, thread: true });
      assert.deepStrictEqual(res, { ok: false, responses: sorted([A.id, B.id]).map((id) => [id, 4]), missing: [S.id] });
      res = await call(R, "op-ack", { to: uid("nobody"), event: "q", args: [3], timeout_ms: 3000, thread: true });
      assert.deepStrictEqual(res, { ok: true, responses: [], missing: [] });
    });

    test("socket.timeout(ms).emitWithAck to one socket: its answer, or a timeout", async (t) => {
      const [R, S] = await connectMany(2, mode, { t });
      answer(R);
      let res = await call(R, "op-ack", { from: "self", event: "q", args: [9], timeout_ms: 3000 });
      assert.deepStrictEqual(res, { ok: true, responses: [[R.id, 10]], missing: [] });
      ignore(S);
      const started = Date.now();
      res = await call(S, "op-ack", { from: "self", event: "q", args: [9], timeout_ms: 300 });
      assert.equal(res.ok, false);
      assert.deepStrictEqual(res.missing, [S.id]);
      assert.match(res.error, /timed out/);
      assert.ok(Date.now() - started >= 250, "waited for the timeout");
      assert.deepStrictEqual(S.asked, [9]);
    });

    test("several answer arguments, and acks interleaved with plain broadcasts", async (t) => {
      const [R, A, B] = await connectMany(3, mode, { t });
      const room = uid("multi");
      for (const c of [A, B]) {
        c.socket.on("q2", (x, y, cb) => cb(x, { y }, [c.id]));
        await call(c, "join", room);
      }
      const event = uid("plain");
      const [res] = await Promise.all([
        call(R, "op-ack", { to: room, event: "q2", args: ["a", 2], timeout_ms: 3000 }),
        op(R, { to: room, event, args: [1] }),
      ]);
      assert.deepStrictEqual(res, {
        ok: true,
        responses: sorted([A.id, B.id]).map((id) => [id, "a", { y: 2 }, [id]]),
        missing: [],
      });
      await expectDelivery({ requester: R, event, recipients: [A, B], others: [R], args: [1] });
    });

    test("the namespace-wide ack ids do not mix up with a socket's own acks", async (t) => {
      const [R, A] = await connectMany(2, mode, { t });
      const room = uid("ids");
      answer(A);
      await call(A, "join", room);
      // Several broadcasts with acks at once, and the client's own acks in between.
      const asks = [1, 2, 3, 4].map((x) => call(R, "op-ack", { to: room, event: "q", args: [x * 10], timeout_ms: 3000 }));
      const whoami = await call(A, "whoami");
      assert.equal(whoami.id, A.id);
      const all = await Promise.all(asks);
      assert.deepStrictEqual(all, [1, 2, 3, 4].map((x) => ({ ok: true, responses: [[A.id, x * 10 + 1]], missing: [] })));
      await waitFor(() => A.asked.length === 4, "4 questions");
      assert.deepStrictEqual(sorted(A.asked), [10, 20, 30, 40]);
    });
  });
}

describe("broadcast acks across namespaces", () => {
  test("io.of('/chat').timeout().emit asks only /chat members", async (t) => {
    const R = await connect("/", { t });
    const [X, Y] = await connectMany(2, "websocket", { nsp: "/chat", t });
    const M = await connect("/", { t });
    const room = uid("chatack");
    for (const c of [X, Y, M]) {
      answer(c);
      await call(c, "join", room);
    }
    const res = await call(R, "op-ack", { nsp: "/chat", to: room, event: "q", args: [0], timeout_ms: 3000 });
    assert.deepStrictEqual(res, { ok: true, responses: sorted([X.id, Y.id]).map((id) => [id, 1]), missing: [] });
    assert.deepStrictEqual(M.asked, []);
  });
});

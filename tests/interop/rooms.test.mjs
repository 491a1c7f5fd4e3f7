// Rooms across shards: the server runs with --shards 4, eight clients connect
// (so they land on different shards), half of them join "r1", and `publish`
// must reach exactly the members, exactly once.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  MODE_NAMES,
  startServer,
  connectClient,
  collect,
  waitFor,
  emitAck,
  sleep,
  normalizeBinary,
} from "./harness.mjs";

const T = { timeout: 30000 };
const N = 8;
const GRACE_MS = 300; // time allowed for duplicates / leaks to show up

describe("rooms", { concurrency: true }, () => {
  // modes: one of MODE_NAMES for all clients, or "mixed" (client i uses MODE_NAMES[i % 3])
  for (const setup of [...MODE_NAMES, "mixed"]) {
    test(`rooms across 4 shards (${setup})`, T, async (t) => {
      const server = await startServer({ args: ["--shards", "4"], t });
      const modeOf = (i) => (setup === "mixed" ? MODE_NAMES[i % MODE_NAMES.length] : setup);
      const clients = await Promise.all(
        Array.from({ length: N }, (_, i) => connectClient(server.url, modeOf(i), { t, auth: { i } })),
      );
      const sockets = clients.map((c) => c.socket);
      clients.forEach((c, i) => assert.deepStrictEqual(c.auth, { i }));
      const news = sockets.map((s) => collect(s, "news"));
      const other = sockets.map((s) => collect(s, "other-event"));

      // members of r1: 0, 2, 4, 6
      let members = new Set([0, 2, 4, 6]);
      for (const i of members) {
        assert.deepStrictEqual(await emitAck(sockets[i], 5000, "join", "r1"), [true], `join ack of client ${i}`);
      }
      // joining twice is harmless (still one delivery per publish)
      assert.deepStrictEqual(await emitAck(sockets[0], 5000, "join", "r1"), [true]);
      // a client in another room only
      assert.deepStrictEqual(await emitAck(sockets[7], 5000, "join", "r2"), [true]);

      async function publishAndCheck(from, id, extraArgs) {
        const payload = { id, text: `hello ${id}`, from };
        const ack = await emitAck(sockets[from], 5000, "publish", "r1", "news", payload, ...extraArgs);
        assert.deepStrictEqual(ack, [true], `publish ack (id ${id})`);
        const countOf = (i) => news[i].filter((args) => args[0]?.id === id).length;
        await waitFor(() => [...members].every((i) => countOf(i) >= 1), 5000, `news ${id} at every member`);
        await sleep(GRACE_MS);
        for (let i = 0; i < N; i++) {
          const expected = members.has(i) ? 1 : 0;
          assert.equal(countOf(i), expected, `client ${i} got news ${id} ${countOf(i)} times, expected ${expected}`);
          if (expected) {
            const args = news[i].find((a) => a[0]?.id === id);
            assert.deepStrictEqual(normalizeBinary(args), normalizeBinary([payload, ...extraArgs]));
          }
        }
      }

      // 1. a member publishes: it receives its own broadcast too
      await publishAndCheck(0, 1, [42, "x"]);
      // 2. a non-member publishes (with a binary arg): it receives nothing
      await publishAndCheck(1, 2, [Buffer.from([1, 2, 3, 250]), { bin: Buffer.from("nested") }]);
      // 3. the r2-only client publishes to r1
      await publishAndCheck(7, 3, []);

      // 4. client 2 leaves: it no longer receives
      assert.deepStrictEqual(await emitAck(sockets[2], 5000, "leave", "r1"), [true]);
      members = new Set([0, 4, 6]);
      await publishAndCheck(4, 4, ["after-leave"]);
      // 5. the publisher leaves too
      assert.deepStrictEqual(await emitAck(sockets[4], 5000, "leave", "r1"), [true]);
      members = new Set([0, 6]);
      await publishAndCheck(4, 5, []);
      // leaving a room one is not in is acked true as well
      assert.deepStrictEqual(await emitAck(sockets[3], 5000, "leave", "r1"), [true]);

      // 6. the event name is the one given to publish, to r2 only reaches client 7
      assert.deepStrictEqual(await emitAck(sockets[5], 5000, "publish", "r2", "other-event", "o", 2), [true]);
      await waitFor(() => other[7].length >= 1, 5000, "other-event at client 7");
      await sleep(GRACE_MS);
      assert.deepStrictEqual(other[7], [["o", 2]]);
      for (let i = 0; i < 7; i++) assert.deepStrictEqual(other[i], [], `client ${i} must not get other-event`);

      // 7. publishing to an empty room is acked and reaches nobody
      assert.deepStrictEqual(await emitAck(sockets[1], 5000, "publish", "nobody-here", "news", { id: 99 }), [true]);
      await sleep(GRACE_MS);
      for (let i = 0; i < N; i++) assert.equal(news[i].filter((a) => a[0]?.id === 99).length, 0);

      // 8. a disconnected member is gone from the room; the others still get it
      sockets[6].disconnect();
      members = new Set([0]);
      await publishAndCheck(1, 6, []);
      // nobody got a news event that was not accounted for above
      const totals = news.map((n) => n.length);
      assert.deepStrictEqual(totals, [6, 0, 3, 0, 4, 0, 5, 0]);
    });
  }

  test("publish without an ack callback still broadcasts (websocket)", T, async (t) => {
    const server = await startServer({ args: ["--shards", "4"], t });
    const clients = await Promise.all(
      Array.from({ length: 4 }, () => connectClient(server.url, "websocket", { t })),
    );
    const sockets = clients.map((c) => c.socket);
    const got = sockets.map((s) => collect(s, "ping-room"));
    for (const s of sockets.slice(0, 3)) assert.deepStrictEqual(await emitAck(s, 5000, "join", "room-x"), [true]);
    sockets[3].emit("publish", "room-x", "ping-room", "no-ack");
    await waitFor(() => got.slice(0, 3).every((g) => g.length === 1), 5000, "ping-room at the 3 members");
    await sleep(GRACE_MS);
    assert.deepStrictEqual(got, [[["no-ack"]], [["no-ack"]], [["no-ack"]], []]);
    // join without ack works as well
    sockets[3].emit("join", "room-x");
    // no ack to wait for: an acked event on the same socket is handled after the join
    assert.deepStrictEqual(await emitAck(sockets[3], 5000, "message-with-ack", "sync"), ["sync"]);
    assert.deepStrictEqual(await emitAck(sockets[0], 5000, "publish", "room-x", "ping-room", "two"), [true]);
    await waitFor(() => got.every((g) => g.length >= (g === got[3] ? 1 : 2)), 5000, "second ping-room");
    await sleep(GRACE_MS);
    assert.deepStrictEqual(got[3], [["two"]]);
    for (const g of got.slice(0, 3)) assert.deepStrictEqual(g, [["no-ack"], ["two"]]);
  });
});

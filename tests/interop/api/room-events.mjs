// The adapter's room events (`create-room`, `join-room`, `leave-room`,
// `delete-room`) as the playground records them per namespace: each fires
// exactly once per change, even when the members live on different shards,
// `create-room` before the first `join-room`, `delete-room` after the last
// `leave-room`; a socket's own id room counts.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { call, connect, connectMany, nudge, once, roomEvents, sleep, uid } from "./_support.mjs";

const shardOf = async (c) => (await call(c, "whoami")).shard;

/** Connects a client whose socket lives on another shard than those of `avoid`. */
async function connectElsewhere(avoid, transport, t) {
  const taken = new Set();
  for (const c of avoid) taken.add(await shardOf(c));
  for (let i = 0; i < 8; i++) {
    const c = await connect("/", { transport, t });
    if (!taken.has(await shardOf(c))) return c;
    c.socket.disconnect();
    await nudge();
  }
  throw new Error(`could not get a socket on a shard other than ${[...taken]}`);
}

/** Only the events about `room`, in order. */
const about = (events, room) => events.filter((e) => e[1] === room);

for (const mode of ["websocket", "polling"]) {
  describe(`room events (${mode})`, () => {
    test("join / leave of a room by members on two shards, each event once, in order", async (t) => {
      const A = await connect("/", { transport: mode, t });
      const B = await connectElsewhere([A], mode, t);
      const r = uid("ev");
      const filter = { rooms: [r] };
      await call(A, "join", r);
      assert.deepStrictEqual(await roomEvents(A, filter, 2), [
        ["create-room", r],
        ["join-room", r, A.id],
      ]);
      await call(B, "join", r);
      assert.deepStrictEqual((await roomEvents(B, filter, 3)).slice(2), [["join-room", r, B.id]]);
      // Joining again, or leaving a room one is not in, changes nothing.
      await call(B, "join", [r, r]);
      await call(A, "leave", uid("never-joined"));
      await call(A, "leave", r);
      assert.deepStrictEqual((await roomEvents(A, filter, 4)).slice(3), [["leave-room", r, A.id]]);
      await call(A, "leave", r);
      await call(B, "leave", r);
      assert.deepStrictEqual(await roomEvents(A, filter, 6), [
        ["create-room", r],
        ["join-room", r, A.id],
        ["join-room", r, B.id],
        ["leave-room", r, A.id],
        ["leave-room", r, B.id],
        ["delete-room", r],
      ]);
      // A new first member creates the room again.
      await call(B, "join", r);
      assert.deepStrictEqual((await roomEvents(A, filter, 8)).slice(6), [
        ["create-room", r],
        ["join-room", r, B.id],
      ]);
    });

    test("connecting creates and joins the socket's own room; a disconnect leaves all its rooms", async (t) => {
      const A = await connect("/", { transport: mode, t });
      const C = await connect("/", { transport: mode, t });
      const D = await connect("/", { transport: mode, t });
      assert.deepStrictEqual(await roomEvents(A, { ids: [C.id] }, 2), [
        ["create-room", C.id],
        ["join-room", C.id, C.id],
      ]);
      const solo = uid("solo");
      const shared = uid("shared");
      await call(A, "join", shared);
      await call(C, "join", [solo, shared]);
      await call(D, "join", [solo, shared]);
      const filter = { rooms: [solo, shared], ids: [C.id, D.id] };
      // own rooms of C and D: 2 + 2; A joins shared: 2; C joins solo + shared: 3; D: 2.
      const before = await roomEvents(A, filter, 4 + 2 + 3 + 2);
      assert.equal(before.length, 11, JSON.stringify(before));
      // The client leaves (client namespace disconnect).
      C.socket.disconnect();
      const afterC = (await roomEvents(A, filter, before.length + 4)).slice(before.length);
      assert.deepStrictEqual(about(afterC, C.id), [
        ["leave-room", C.id, C.id],
        ["delete-room", C.id],
      ]);
      assert.deepStrictEqual(about(afterC, solo), [["leave-room", solo, C.id]]);
      assert.deepStrictEqual(about(afterC, shared), [["leave-room", shared, C.id]]);
      assert.equal(afterC.length, 4);
      // The server disconnects D: the last member of `solo` deletes it.
      const n = before.length + afterC.length;
      const gone = once(D.socket, "disconnect");
      await call(A, "disconnect-sockets", { to: D.id });
      await gone;
      const afterD = (await roomEvents(A, filter, n + 5)).slice(n);
      assert.deepStrictEqual(about(afterD, D.id), [
        ["leave-room", D.id, D.id],
        ["delete-room", D.id],
      ]);
      assert.deepStrictEqual(about(afterD, solo), [
        ["leave-room", solo, D.id],
        ["delete-room", solo],
      ]);
      assert.deepStrictEqual(about(afterD, shared), [["leave-room", shared, D.id]]);
      assert.equal(afterD.length, 5);
    });

    test("a dropped connection (transport close) leaves all the socket's rooms", async (t) => {
      const A = await connect("/", { transport: mode, t });
      const E = await connect("/", { transport: mode, t });
      const room = uid("drop");
      await call(E, "join", room);
      const filter = { rooms: [room], ids: [E.id] };
      const before = await roomEvents(A, filter, 4);
      assert.deepStrictEqual(before, [
        ["create-room", E.id],
        ["join-room", E.id, E.id],
        ["create-room", room],
        ["join-room", room, E.id],
      ]);
      E.socket.io.engine.close(); // no DISCONNECT packet: the connection just goes
      const after = (await roomEvents(A, filter, 8)).slice(4);
      assert.deepStrictEqual(about(after, E.id), [
        ["leave-room", E.id, E.id],
        ["delete-room", E.id],
      ]);
      assert.deepStrictEqual(about(after, room), [
        ["leave-room", room, E.id],
        ["delete-room", room],
      ]);
      assert.equal(after.length, 4);
    });

    test("sockets_join / sockets_leave over shards: one create-room, one delete-room, one event per socket", async (t) => {
      const members = await connectMany(6, mode === "polling" ? "polling" : "mixed", { t });
      const shards = new Set();
      for (const c of members) shards.add(await shardOf(c));
      assert.ok(shards.size >= 2, `members on ${shards.size} shard(s)`);
      const R = members[0];
      const base = uid("base");
      for (const c of members) await call(c, "join", base);
      const big = uid("big");
      await call(R, "sockets-join", { in: base, rooms: big });
      const joined = await roomEvents(R, { rooms: [big] }, 1 + members.length);
      assert.deepStrictEqual(joined[0], ["create-room", big]);
      assert.deepStrictEqual(
        joined.slice(1).sort(),
        members.map((c) => ["join-room", big, c.id]).sort(),
      );
      await call(R, "sockets-leave", { to: big, rooms: big });
      const all = await roomEvents(R, { rooms: [big] }, 2 + 2 * members.length);
      const left = all.slice(joined.length);
      assert.deepStrictEqual(left.at(-1), ["delete-room", big]);
      assert.deepStrictEqual(
        left.slice(0, -1).sort(),
        members.map((c) => ["leave-room", big, c.id]).sort(),
      );
    });

    test("each namespace has its own room events", async (t) => {
      const A = await connect("/", { transport: mode, t });
      const X = await connect("/chat", { transport: mode, t });
      const r = uid("nsp-ev");
      await call(A, "join", r);
      await call(X, "join", r);
      assert.deepStrictEqual(await roomEvents(A, { rooms: [r] }, 2), [
        ["create-room", r],
        ["join-room", r, A.id],
      ]);
      assert.deepStrictEqual(await roomEvents(X, { rooms: [r] }, 2), [
        ["create-room", r],
        ["join-room", r, X.id],
      ]);
      await call(X, "leave", r);
      assert.deepStrictEqual((await roomEvents(X, { rooms: [r] }, 4)).slice(2), [
        ["leave-room", r, X.id],
        ["delete-room", r],
      ]);
      await sleep(50);
      assert.equal((await call(A, "room-events", { rooms: [r] })).length, 2, "/ unaffected");
    });
  });
}

// Broadcast operators driven through the playground: socket.broadcast, to / in
// / except (single, arrays, chained both ways), socket.to excluding the sender,
// private messages to a socket id, namespaces kept apart, io.emit, local,
// compress, binary arguments, reserved event names, volatile. Each recipient
// gets the event exactly once; every other client gets nothing.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  MODES,
  call,
  connect,
  connectMany,
  dynName,
  expectDelivery,
  flush,
  got,
  op,
  uid,
} from "./_support.mjs";

const ARGS = [1, "two", { three: [3, 3.5, null, true] }, [], ""];

/** Five clients on `/` (r1 = A B C, r2 = C D, E in no room) and two on `/chat`. */
async function world(t, mode) {
  const [A, B, C, D, E] = await connectMany(5, mode, { t });
  const [X, Y] = await connectMany(2, mode, { nsp: "/chat", t });
  const r1 = uid("r1");
  const r2 = uid("r2");
  for (const c of [A, B]) assert.equal(await call(c, "join", r1), true);
  assert.equal(await call(C, "join", [r1, r2]), true);
  assert.equal(await call(D, "join", r2), true);
  return { A, B, C, D, E, X, Y, r1, r2, main: [A, B, C, D, E], chat: [X, Y], everyone: [A, B, C, D, E, X, Y] };
}

/** The clients of `all` that are not in `some`. */
const rest = (all, some) => all.filter((c) => !some.includes(c));

for (const mode of MODES) {
  describe(`broadcast operators (${mode})`, () => {
    test("the clients spread over the shards and see their rooms", async (t) => {
      const w = await world(t, mode);
      const shards = new Set();
      for (const c of w.main) {
        const me = await call(c, "whoami");
        assert.equal(me.id, c.id);
        assert.equal(me.connected, true);
        shards.add(me.shard);
      }
      assert.ok(shards.size >= 2, `5 clients on ${shards.size} shard(s): ${[...shards]}`);
      assert.deepStrictEqual((await call(w.A, "whoami")).rooms, [w.A.id, w.r1].sort());
      assert.deepStrictEqual((await call(w.C, "whoami")).rooms, [w.C.id, w.r1, w.r2].sort());
      assert.deepStrictEqual((await call(w.E, "whoami")).rooms, [w.E.id]);
    });

    test("socket.broadcast.emit reaches everyone in the namespace but the sender", async (t) => {
      const w = await world(t, mode);
      const event = uid("bcast");
      await op(w.A, { from: "broadcast", event, args: ARGS });
      await expectDelivery({
        requester: w.A,
        event,
        recipients: [w.B, w.C, w.D, w.E],
        others: [w.A, ...w.chat],
        args: ARGS,
      });
    });

    test("to(room) and in(room) reach exactly the members, the requester included", async (t) => {
      const w = await world(t, mode);
      for (const key of ["to", "in"]) {
        const event = uid(key);
        await op(w.A, { [key]: w.r1, event, args: ARGS });
        const members = [w.A, w.B, w.C];
        await expectDelivery({ requester: w.A, event, recipients: members, others: rest(w.everyone, members), args: ARGS });
      }
    });

    test("to([r1, r2]) and to(r1).to(r2) reach the union, a member of both once", async (t) => {
      const w = await world(t, mode);
      const union = [w.A, w.B, w.C, w.D];
      for (const spec of [{ to: [w.r1, w.r2] }, { steps: [["to", w.r1], ["to", w.r2]] }, { steps: [["in", w.r2], ["to", w.r1]] }]) {
        const event = uid("union");
        await op(w.E, { ...spec, event, args: ARGS });
        await expectDelivery({ requester: w.E, event, recipients: union, others: rest(w.everyone, union), args: ARGS });
      }
    });

    test("except(room) and except([rooms]) skip the members", async (t) => {
      const w = await world(t, mode);
      let event = uid("except");
      await op(w.A, { except: w.r2, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.A, w.B, w.E], others: [w.C, w.D, ...w.chat], args: ARGS });
      event = uid("except2");
      await op(w.A, { except: [w.r1, w.r2], event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.E], others: rest(w.everyone, [w.E]), args: ARGS });
    });

    test("to(r1).except(r2) and except(r2).to(r1) are the same selection", async (t) => {
      const w = await world(t, mode);
      for (const steps of [[["to", w.r1], ["except", w.r2]], [["except", w.r2], ["to", w.r1]]]) {
        const event = uid("chain");
        await op(w.D, { steps, event, args: ARGS });
        await expectDelivery({ requester: w.D, event, recipients: [w.A, w.B], others: rest(w.everyone, [w.A, w.B]), args: ARGS });
      }
      // A room both targeted and excluded selects nobody.
      const event = uid("none");
      await op(w.D, { to: w.r1, except: w.r1, event, args: ARGS });
      await expectDelivery({ requester: w.D, event, recipients: [], others: w.everyone });
    });

    test("socket.to / socket.in / socket.except exclude the sender", async (t) => {
      const w = await world(t, mode);
      let event = uid("sock-to");
      await op(w.A, { from: "socket", to: w.r1, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.B, w.C], others: rest(w.everyone, [w.B, w.C]), args: ARGS });

      event = uid("sock-in-union");
      await op(w.C, { from: "socket", in: [w.r1, w.r2], event, args: ARGS });
      await expectDelivery({ requester: w.C, event, recipients: [w.A, w.B, w.D], others: rest(w.everyone, [w.A, w.B, w.D]), args: ARGS });

      event = uid("sock-except");
      await op(w.A, { from: "socket", except: w.r2, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.B, w.E], others: rest(w.everyone, [w.B, w.E]), args: ARGS });

      // socket.to(r1).to(r2): the union, the sender left out.
      event = uid("sock-to-to");
      await op(w.C, { from: "socket", steps: [["to", w.r1], ["to", w.r2]], event, args: ARGS });
      await expectDelivery({ requester: w.C, event, recipients: [w.A, w.B, w.D], others: rest(w.everyone, [w.A, w.B, w.D]), args: ARGS });

      // socket.broadcast.to(r2).except(r1)
      event = uid("sock-chain");
      await op(w.E, { from: "broadcast", steps: [["to", w.r2], ["except", w.r1]], event, args: ARGS });
      await expectDelivery({ requester: w.E, event, recipients: [w.D], others: rest(w.everyone, [w.D]), args: ARGS });
    });

    test("io.to(socketId) is a private message; socket.to(own id) reaches nobody", async (t) => {
      const w = await world(t, mode);
      let event = uid("private");
      await op(w.A, { to: w.D.id, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.D], others: rest(w.everyone, [w.D]), args: ARGS });

      event = uid("private-and-room");
      await op(w.A, { to: [w.D.id, w.r2, w.E.id], event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.C, w.D, w.E], others: rest(w.everyone, [w.C, w.D, w.E]), args: ARGS });

      event = uid("to-self");
      await op(w.A, { from: "socket", to: w.A.id, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [], others: w.everyone });

      // A socket id of another namespace is not a room of this one.
      event = uid("cross-id");
      await op(w.A, { to: w.X.id, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [], others: w.everyone });
    });

    test("io.of('/chat').to(room) reaches only /chat members, not / members of a same-named room", async (t) => {
      const w = await world(t, mode);
      const room = uid("shared-name");
      assert.equal(await call(w.X, "join", room), true);
      assert.equal(await call(w.A, "join", room), true);
      assert.equal(await call(w.B, "join", room), true);

      let event = uid("chat-room");
      await op(w.A, { nsp: "/chat", to: room, event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: [w.X], others: rest(w.everyone, [w.X]), args: ARGS });

      event = uid("main-room-from-chat");
      await op(w.Y, { nsp: "/", to: room, event, args: ARGS });
      await expectDelivery({ requester: w.Y, event, recipients: [w.A, w.B], others: rest(w.everyone, [w.A, w.B]), args: ARGS });

      // io.of("/chat").emit: every /chat socket, no / socket.
      event = uid("chat-all");
      await op(w.A, { nsp: "/chat", event, args: ARGS });
      await expectDelivery({ requester: w.A, event, recipients: w.chat, others: w.main, args: ARGS });
    });

    test("io.emit reaches every socket of / (the requester included) and none of /chat", async (t) => {
      const w = await world(t, mode);
      const event = uid("io-emit");
      await op(w.X, { nsp: "/", event, args: ARGS });
      await expectDelivery({ requester: w.X, event, recipients: w.main, others: w.chat, args: ARGS });
    });

    test("io.local().emit and io.local().to(room)", async (t) => {
      const w = await world(t, mode);
      let event = uid("local");
      await op(w.B, { local: true, event, args: ARGS });
      await expectDelivery({ requester: w.B, event, recipients: w.main, others: w.chat, args: ARGS });

      event = uid("local-room");
      await op(w.B, { steps: ["local", ["to", w.r2]], event, args: ARGS });
      await expectDelivery({ requester: w.B, event, recipients: [w.C, w.D], others: rest(w.everyone, [w.C, w.D]), args: ARGS });
    });

    test("compress(false) changes nothing to who receives what", async (t) => {
      const w = await world(t, mode);
      const big = "x".repeat(5000);
      for (const compress of [false, true]) {
        const event = uid(`compress-${compress}`);
        await op(w.E, { to: w.r1, compress, event, args: [big, compress] });
        await expectDelivery({ requester: w.E, event, recipients: [w.A, w.B, w.C], others: rest(w.everyone, [w.A, w.B, w.C]), args: [big, compress] });
      }
    });

    test("binary arguments of a broadcast arrive byte-identical at each member", async (t) => {
      const w = await world(t, mode);
      const all256 = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const small = Buffer.from([0, 1, 2, 0xfe, 0xff]);
      const args = ["bin", all256, { nested: small, list: [Buffer.alloc(0), Buffer.from("é€", "utf8")] }, 7];
      // The client's own binary args, re-broadcast by the server.
      let event = uid("bin");
      await op(w.D, { to: w.r1, event }, ...args);
      await expectDelivery({ requester: w.D, event, recipients: [w.A, w.B, w.C], others: rest(w.everyone, [w.A, w.B, w.C]), args });
      for (const c of [w.A, w.B, w.C]) {
        const [, buf] = got(c, event)[0];
        assert.ok(Buffer.isBuffer(buf), "a binary argument arrives as a Buffer in Node");
        assert.ok(buf.equals(all256));
      }
      // Binary args built by the server.
      event = uid("server-bin");
      await op(w.D, { from: "socket", to: w.r2, event, args: ["srv"], bin: ["00ff10", ""] });
      await expectDelivery({
        requester: w.D,
        event,
        recipients: [w.C],
        others: rest(w.everyone, [w.C]),
        args: ["srv", Buffer.from([0, 0xff, 0x10]), Buffer.alloc(0)],
      });
    });

    test("emits from a thread that is not a shard select the same sockets", async (t) => {
      const w = await world(t, mode);
      const cases = [
        [{ to: w.r1 }, [w.A, w.B, w.C]],
        [{ to: [w.r1, w.r2], except: w.A.id }, [w.B, w.C, w.D]],
        [{ except: [w.r1, w.r2] }, [w.E]],
        [{ from: "broadcast" }, [w.B, w.C, w.D, w.E]],
        [{ from: "socket", to: w.r2 }, [w.C, w.D]],
        [{}, w.main],
        [{ nsp: "/chat" }, w.chat],
      ];
      for (const [spec, recipients] of cases) {
        const event = uid("thread");
        await op(w.A, { ...spec, thread: true, event, args: ARGS });
        await expectDelivery({ requester: w.A, event, recipients, others: rest(w.everyone, recipients), args: ARGS, thread: true });
      }
    });

    test("reserved event names are refused and reach nobody", async (t) => {
      const w = await world(t, mode);
      const reserved = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];
      for (const event of reserved) {
        for (const spec of [{ to: w.r1 }, {}, { from: "broadcast" }, { from: "socket", to: w.r2 }, { from: "self" }, { nsp: "/chat" }]) {
          const res = await call(w.C, "op", { ...spec, event, args: ["should not arrive"] });
          assert.equal(typeof res, "string", `${event} with ${JSON.stringify(spec)} must be refused, got ${JSON.stringify(res)}`);
          assert.match(res, /reserved/);
          assert.ok(res.includes(event), res);
        }
        const acked = await call(w.C, "op-ack", { to: w.r1, event, timeout_ms: 300 });
        assert.equal(acked.ok, false);
        assert.match(acked.error, /reserved/);
      }
      await flush(w.C, w.everyone);
      for (const c of w.everyone) {
        const leaked = c.events.filter((e) => reserved.includes(e[0]) || e.includes("should not arrive"));
        assert.deepStrictEqual(leaked, [], `${c.id} received a reserved event`);
        assert.equal(c.socket.connected, true);
      }
      // The sockets still work.
      const event = uid("after-reserved");
      await op(w.C, { to: w.r1, event, args: [1] });
      await expectDelivery({ requester: w.C, event, recipients: [w.A, w.B, w.C], others: rest(w.everyone, [w.A, w.B, w.C]), args: [1] });
    });
  });
}

describe("volatile (websocket)", () => {
  test("io.volatile().emit reaches idle websocket clients, nothing is dropped", async (t) => {
    const nsp = dynName();
    const [A, B, C] = await connectMany(3, "websocket", { nsp, t });
    const before = await call(A, "volatile-dropped");
    let event = uid("volatile");
    await op(A, { nsp, volatile: true, event, args: ["v", 1] });
    await expectDelivery({ requester: A, event, recipients: [A, B, C], others: [], args: ["v", 1] });

    const room = uid("vroom");
    await call(B, "join", room);
    event = uid("volatile-room");
    await op(A, { nsp, steps: ["volatile", ["to", room]], event, args: ["v", 2] });
    await expectDelivery({ requester: A, event, recipients: [B], others: [A, C], args: ["v", 2] });

    event = uid("volatile-self");
    await op(C, { from: "self", volatile: true, event, args: ["v", 3] });
    await expectDelivery({ requester: C, event, recipients: [C], others: [A, B], args: ["v", 3] });

    // Volatile broadcasts on the main namespace too (all of `/`, so other idle clients
    // may be reached as well; ours are idle websocket clients).
    const main = await connect("/", { transport: "websocket", t });
    event = uid("volatile-main");
    await op(main, { nsp: "/", volatile: true, to: main.id, event, args: [4] });
    await expectDelivery({ requester: main, event, recipients: [main], others: [], args: [4] });

    assert.equal(await call(A, "volatile-dropped"), before, "no volatile packet dropped for idle websocket clients");
  });
});

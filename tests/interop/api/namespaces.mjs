// Dynamic namespaces (`io.of(/^\/dyn-\d+$/)`): created on first connect,
// independent of each other, multiplexed on one connection, refused when the
// name does not match or the pattern's middleware says no; emits to a child,
// to every child through the parent, and to a room through the parent.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Manager, URL, call, connect, connectError, dynName, expectDelivery, got, once, op, sleep, uid } from "./_support.mjs";

for (const mode of ["websocket", "polling"]) {
  describe(`dynamic namespaces (${mode})`, () => {
    test("two dynamic namespaces connect, greet with the auth and echo independently", async (t) => {
      const n1 = dynName();
      const n2 = dynName();
      const a = await connect(n1, { transport: mode, auth: { name: "ann", n: 1 }, t });
      const b = await connect(n2, { transport: mode, auth: { name: "bob" }, t });
      assert.deepStrictEqual(a.welcome, { id: a.id, nsp: n1, auth: { name: "ann", n: 1 } });
      assert.deepStrictEqual(b.welcome, { id: b.id, nsp: n2, auth: { name: "bob" } });
      const backA = once(a.socket, "message-back");
      a.socket.emit("message", "to-1", Buffer.from([1, 2]));
      const [text, bin] = await backA;
      assert.equal(text, "to-1");
      assert.ok(Buffer.from([1, 2]).equals(bin));
      const backB = once(b.socket, "message-back");
      b.socket.emit("message", "to-2");
      assert.deepStrictEqual(await backB, ["to-2"]);
      await sleep(50);
      assert.equal(got(a, "message-back").length, 1);
      assert.equal(got(b, "message-back").length, 1);
      assert.equal((await call(a, "whoami")).nsp, n1);
      assert.deepStrictEqual((await call(b, "fetch", {})).map((f) => f.id), [b.id], "io.of(child).fetch_sockets");
    });

    test("dynamic namespaces multiplexed on one connection with / stay apart", async (t) => {
      const n1 = dynName();
      const n2 = dynName();
      const m = new Manager(URL, { reconnection: false, transports: [mode], timeout: 5000 });
      t.after(() => m.engine?.close());
      const main = await connect("/", { manager: m, t });
      const a = await connect(n1, { manager: m, t });
      const b = await connect(n2, { manager: m, auth: { k: "v" }, t });
      assert.deepStrictEqual(b.welcome.auth, { k: "v" });
      const event = uid("child");
      await op(main, { nsp: n1, event, args: ["n1 only"] });
      await expectDelivery({ requester: main, event, recipients: [a], others: [b, main], args: ["n1 only"] });
      const room = uid("dynroom");
      await call(b, "join", room);
      await call(main, "join", room);
      const e2 = uid("child-room");
      await op(a, { nsp: n2, to: room, event: e2, args: [] });
      await expectDelivery({ requester: a, event: e2, recipients: [b], others: [a, main] });
    });

    test("a name the pattern does not match: Invalid namespace, the others unaffected", async (t) => {
      const m = new Manager(URL, { reconnection: false, transports: [mode], timeout: 5000 });
      t.after(() => m.engine?.close());
      const main = await connect("/", { manager: m, t });
      for (const bad of ["/dyn-x", "/dyn-", "/dyn-1a", "/xdyn-1"]) {
        const err = await connectError(bad, { manager: m, t });
        assert.equal(err.message, "Invalid namespace", bad);
      }
      const back = once(main.socket, "message-back");
      main.socket.emit("message", "ok");
      assert.deepStrictEqual(await back, ["ok"]);
    });

    test("the pattern's middleware refuses auth {deny:true} with its message and data", async (t) => {
      const nsp = dynName();
      const err = await connectError(nsp, { transport: mode, auth: { deny: true }, t });
      assert.equal(err.message, "denied by the dyn middleware");
      assert.deepStrictEqual(err.data, { nsp, reason: "deny" });
      // The same name with another auth is accepted.
      const ok = await connect(nsp, { transport: mode, auth: { deny: false }, t });
      assert.deepStrictEqual(ok.welcome.auth, { deny: false });
    });

    test("the parent namespace's emit reaches every child namespace", async (t) => {
      const n1 = dynName();
      const n2 = dynName();
      const a = await connect(n1, { transport: mode, t });
      const b = await connect(n2, { transport: mode, t });
      const main = await connect("/", { transport: mode, t });
      const event = uid("parent");
      await op(a, { from: "parent", event, args: ["all children"] });
      // Every child namespace is reached (other children of concurrent tests too).
      await expectDelivery({ requester: a, event, recipients: [a, b], others: [main], args: ["all children"] });
    });

    test(
      "the parent namespace's to(room).emit reaches the room's members in every child",
      {},
      async (t) => {
      // socket.io: ParentNamespace uses a ParentBroadcastAdapter whose broadcast() runs the
      // child namespaces' broadcast with the same rooms / except, so
      // io.of(/^\/dyn-\d+$/).to("room").emit(...) reaches the members of "room" in every child.
      const n1 = dynName();
      const n2 = dynName();
      const a = await connect(n1, { transport: mode, t });
      const a2 = await connect(n1, { transport: mode, t });
      const b = await connect(n2, { transport: mode, t });
      const room = uid("parentroom");
      await call(a, "join", room);
      await call(b, "join", room);
      const event = uid("parent-room");
      await op(a2, { from: "parent", to: room, event, args: [1] });
      await expectDelivery({ requester: a2, event, recipients: [a, b], others: [a2], args: [1] });
      },
    );
  });
}

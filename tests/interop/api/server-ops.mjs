// Server-side operations over a selection of sockets, on every shard:
// fetch_sockets (ids, data, the handles it returns), sockets_join,
// sockets_leave, disconnect_sockets (with and without closing the
// connection), as seen by official clients.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  Manager,
  URL,
  call,
  connect,
  connectMany,
  dynName,
  expectDelivery,
  got,
  nudge,
  once,
  op,
  sleep,
  sorted,
  transportOf,
  uid,
  waitFor,
} from "./_support.mjs";

const ids = (list) => list.map((x) => x.id);

async function shardsOf(clients) {
  const s = new Set();
  for (const c of clients) s.add((await call(c, "whoami")).shard);
  return s;
}

for (const mode of ["websocket", "polling", "mixed"]) {
  describe(`server-side operations (${mode})`, () => {
    test("fetch_sockets on a room returns exactly its members across shards, with their data", async (t) => {
      const clients = [];
      for (let i = 0; i < 6; i++) {
        clients.push(await connect("/", { transport: transportOf(mode, i), auth: { name: `user${i}` }, t }));
        if (transportOf(mode, i) === "polling") await nudge();
      }
      const room = uid("fetch");
      const members = clients.slice(0, 4);
      for (const c of members) await call(c, "join", room);
      assert.ok((await shardsOf(members)).size >= 2, "members on at least 2 shards");
      await call(members[1], "set-data", { name: "renamed", n: 1 });

      const R = clients[5];
      const list = await call(R, "fetch", { to: room });
      assert.deepStrictEqual(ids(list), sorted(ids(members)));
      for (const f of list) {
        const i = clients.findIndex((c) => c.id === f.id);
        const expected = i === 1 ? { name: "renamed", n: 1 } : { name: `user${i}`, nsp: "/" };
        assert.deepStrictEqual(f.data, expected, `data of ${f.id}`);
        assert.equal(f.nsp, "/");
        assert.equal(f.connected, true);
      }
      // except, union, and the whole namespace.
      const r2 = uid("fetch2");
      await call(clients[4], "join", r2);
      await call(members[0], "join", r2);
      assert.deepStrictEqual(ids(await call(R, "fetch", { to: room, except: r2 })), sorted(ids(members.slice(1))));
      assert.deepStrictEqual(ids(await call(R, "fetch", { to: [room, r2] })), sorted(ids(clients.slice(0, 5))));
      assert.deepStrictEqual(ids(await call(R, "fetch", { from: "socket", to: [room, r2, R.id] })), sorted(ids(clients.slice(0, 5))));
      const everyone = ids(await call(R, "fetch", {}));
      for (const c of clients) assert.ok(everyone.includes(c.id), `io.fetch_sockets() includes ${c.id}`);
      assert.deepStrictEqual(await call(R, "fetch", { to: uid("nobody") }), []);
      // From a thread that is not a shard.
      assert.deepStrictEqual(ids(await call(R, "fetch", { to: room, thread: true })), sorted(ids(members)));
      // /chat sockets are not in /.
      const X = await connect("/chat", { t });
      await call(X, "join", room);
      assert.deepStrictEqual(ids(await call(R, "fetch", { to: room })), sorted(ids(members)));
      assert.deepStrictEqual(ids(await call(R, "fetch", { nsp: "/chat", to: room })), [X.id]);
    });

    test(
      "the fetched handles know their rooms, wherever their socket lives",
      {},
      async (t) => {
        const clients = await connectMany(5, mode, { t });
        const room = uid("remote-rooms");
        for (const c of clients.slice(1)) await call(c, "join", room);
        assert.ok((await shardsOf(clients)).size >= 2);
        const list = await call(clients[0], "fetch", { to: room });
        assert.deepStrictEqual(
          list.map((f) => [f.id, f.rooms]),
          sorted(ids(clients.slice(1))).map((id) => [id, sorted([id, room])]),
        );
      },
    );

    test("the fetched handles emit, join, leave and disconnect wherever their socket lives", async (t) => {
      const [R, A, B, C] = await connectMany(4, mode, { t });
      const room = uid("remote");
      for (const c of [A, B, C]) await call(c, "join", room);
      const event = uid("remote-emit");
      const newRoom = uid("remote-join");
      await call(R, "fetch", { to: room, except: C.id, emit: { event, args: ["hi", 1] }, join: newRoom });
      await expectDelivery({ requester: R, event, recipients: [A, B], others: [R, C], args: ["hi", 1] });
      await waitFor(async () => (await call(A, "whoami")).rooms.includes(newRoom), "remote join");
      const e2 = uid("after-remote-join");
      await op(R, { to: newRoom, event: e2, args: [] });
      await expectDelivery({ requester: R, event: e2, recipients: [A, B], others: [R, C] });

      await call(R, "fetch", { to: newRoom, leave: newRoom });
      const e3 = uid("after-remote-leave");
      await op(R, { to: newRoom, event: e3, args: [] });
      await expectDelivery({ requester: R, event: e3, recipients: [], others: [R, A, B, C] });

      const gone = once(B.socket, "disconnect");
      await call(R, "fetch", { to: B.id, disconnect: false });
      assert.equal((await gone)[0], "io server disconnect");
    });

    test("sockets_join then to(newRoom) reaches them; sockets_leave undoes it", async (t) => {
      const [R, A, B, C, D] = await connectMany(5, mode, { t });
      const room = uid("sj");
      for (const c of [A, B, C]) await call(c, "join", room);
      const newRoom = uid("sj-new");
      assert.equal(await call(R, "sockets-join", { in: room, rooms: [newRoom] }), true);
      let event = uid("sj-event");
      await op(R, { to: newRoom, event, args: ["x"] });
      await expectDelivery({ requester: R, event, recipients: [A, B, C], others: [R, D], args: ["x"] });
      for (const c of [A, B, C]) assert.ok((await call(c, "whoami")).rooms.includes(newRoom), `${c.id} in ${newRoom}`);
      assert.ok(!(await call(D, "whoami")).rooms.includes(newRoom));
      assert.deepStrictEqual(ids(await call(R, "fetch", { to: newRoom })), sorted(ids([A, B, C])));

      // A selection with except, several rooms at once.
      const r2 = uid("sj-2");
      const r3 = uid("sj-3");
      assert.equal(await call(R, "sockets-join", { to: newRoom, except: B.id, rooms: [r2, r3] }), true);
      event = uid("sj-event2");
      await op(R, { to: r3, event, args: [] });
      await expectDelivery({ requester: R, event, recipients: [A, C], others: [R, B, D] });

      assert.equal(await call(R, "sockets-leave", { to: room, rooms: newRoom }), true);
      event = uid("sl-event");
      await op(R, { to: newRoom, event, args: [] });
      await expectDelivery({ requester: R, event, recipients: [], others: [R, A, B, C, D] });
      for (const c of [A, B, C]) {
        const rooms = (await call(c, "whoami")).rooms;
        assert.ok(!rooms.includes(newRoom) && rooms.includes(room), `${c.id} left ${newRoom} only: ${rooms}`);
      }
      assert.deepStrictEqual(await call(R, "fetch", { to: newRoom }), []);
    });

    test("namespace-wide sockets_join / fetch_sockets / emit on an isolated namespace", async (t) => {
      const nsp = dynName();
      const [R, A, B] = await connectMany(3, mode, { nsp, t });
      const other = await connect(dynName(), { t });
      const everyone = uid("all");
      assert.equal(await call(R, "sockets-join", { nsp, rooms: everyone }), true);
      const event = uid("nsp-all");
      await op(R, { nsp, to: everyone, event, args: [] });
      await expectDelivery({ requester: R, event, recipients: [R, A, B], others: [other] });
      assert.deepStrictEqual(ids(await call(R, "fetch", { nsp })), sorted(ids([R, A, B])));
      assert.equal(await call(R, "sockets-leave", { nsp, rooms: everyone }), true);
      assert.deepStrictEqual(await call(R, "fetch", { nsp, to: everyone }), []);
    });

    test("disconnect_sockets(false) on a room: members see io server disconnect on / only", async (t) => {
      const transports = [0, 1, 2, 3].map((i) => transportOf(mode, i));
      const managers = transports.map((tr) => new Manager(URL, { reconnection: false, transports: [tr], timeout: 5000 }));
      t.after(() => managers.forEach((m) => m.engine?.close()));
      const mains = [];
      const chats = [];
      for (const m of managers) {
        mains.push(await connect("/", { manager: m, t }));
        chats.push(await connect("/chat", { manager: m, t }));
      }
      const [R, A, B, C] = mains;
      const room = uid("dc");
      for (const c of [A, B]) await call(c, "join", room);
      await call(chats[3], "join", room); // the /chat socket of C is in a /chat room of that name
      const reasons = mains.map((c) => {
        const r = [];
        c.socket.on("disconnect", (reason) => r.push(reason));
        return r;
      });
      assert.equal(await call(R, "disconnect-sockets", { in: room, close: false }), true);
      await waitFor(() => !A.socket.connected && !B.socket.connected, "members disconnected");
      assert.deepStrictEqual(reasons[1], ["io server disconnect"]);
      assert.deepStrictEqual(reasons[2], ["io server disconnect"]);
      // Not the others, and not the /chat sockets of the same connections.
      await sleep(100);
      assert.ok(R.socket.connected && C.socket.connected);
      assert.deepStrictEqual([reasons[0], reasons[3]], [[], []]);
      for (const x of chats) {
        assert.equal(x.socket.connected, true);
        assert.equal((await call(x, "whoami")).id, x.id);
      }
      // The disconnected sockets left their rooms; the others still get broadcasts.
      assert.deepStrictEqual(await call(R, "fetch", { to: room }), []);
      const event = uid("after-dc");
      await op(R, { to: [room, C.id], event, args: [] });
      await expectDelivery({ requester: R, event, recipients: [C], others: [R] });
      assert.deepStrictEqual(got(A, event), []);
      // No automatic reconnection after a server-side disconnect.
      await sleep(200);
      assert.equal(A.socket.connected, false);
    });

    test("disconnect_sockets(true) closes the members' whole connections", async (t) => {
      const transports = [0, 1, 2].map((i) => transportOf(mode, i));
      const managers = transports.map((tr) => new Manager(URL, { reconnection: false, transports: [tr], timeout: 5000 }));
      t.after(() => managers.forEach((m) => m.engine?.close()));
      const mains = [];
      const chats = [];
      for (const m of managers) {
        mains.push(await connect("/", { manager: m, t }));
        chats.push(await connect("/chat", { manager: m, t }));
      }
      const [R, A, B] = mains;
      const room = uid("dc-close");
      await call(A, "join", room);
      const gone = [once(A.socket, "disconnect"), once(chats[1].socket, "disconnect")];
      assert.equal(await call(R, "disconnect-sockets", { to: room, close: true }), true);
      const [[r1], [r2]] = await Promise.all(gone);
      assert.equal(r1, "io server disconnect");
      assert.equal(r2, "io server disconnect", "the /chat socket of that connection is disconnected too");
      for (const c of [R, B, chats[0], chats[2]]) assert.equal(c.socket.connected, true);
      assert.equal((await call(chats[2], "whoami")).id, chats[2].id);
    });
  });
}

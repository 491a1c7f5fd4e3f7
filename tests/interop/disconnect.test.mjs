// `disconnect-me`: the server disconnects the socket together with the
// underlying connection; the client sees reason "io server disconnect" and
// does not reconnect on its own.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { MODES, MODE_NAMES, startServer, connectClient, track, collect, once, echo, sleep } from "./harness.mjs";

const T = { timeout: 20000 };

describe("disconnect-me", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    test(`disconnect-me gives "io server disconnect" and no reconnection (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      // reconnection ON: a server-side disconnect must still not be retried
      const { socket } = await connectClient(server.url, mode, {
        t,
        reconnection: true,
        reconnectionDelay: 50,
        reconnectionDelayMax: 100,
      });
      assert.deepStrictEqual(await echo(socket, 5000, "before"), ["before"]);
      const connects = collect(socket, "connect");
      const reconnectAttempts = collect(socket.io, "reconnect_attempt");
      const disc = once(socket, "disconnect", 5000);
      socket.emit("disconnect-me");
      const [reason] = await disc;
      assert.equal(reason, "io server disconnect");
      assert.equal(socket.connected, false);
      assert.equal(socket.active, false);
      await sleep(500);
      assert.deepStrictEqual(connects, [], "must not reconnect after io server disconnect");
      assert.deepStrictEqual(reconnectAttempts, []);

      // the server is fine, and a manual reconnect works
      const auth = once(socket, "auth", 8000);
      socket.connect();
      await once(socket, "connect", 8000);
      assert.deepStrictEqual((await auth)[0], {});
      assert.deepStrictEqual(await echo(socket, 5000, "after manual reconnect"), ["after manual reconnect"]);
    });

    test(`disconnect-me closes the whole connection: "/custom" on it is disconnected too (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      const a = track(io(server.url, { ...MODES[mode], reconnection: true, reconnectionDelay: 50 }));
      const b = track(io(server.url + "/custom"));
      t.after(() => {
        a.disconnect();
        b.disconnect();
      });
      assert.equal(a.io, b.io);
      await Promise.all([once(a, "auth", 8000), once(b, "auth", 8000)]);
      const engine = a.io.engine;
      const engineClosed = once(engine, "close", 5000);
      const da = once(a, "disconnect", 5000);
      const db = once(b, "disconnect", 5000);
      a.emit("disconnect-me");
      assert.equal((await da)[0], "io server disconnect");
      // the reference server sends a DISCONNECT packet to every namespace of the
      // connection before closing it, so /custom sees the same reason
      assert.equal((await db)[0], "io server disconnect");
      await engineClosed;
      await sleep(300);
      assert.equal(a.connected, false);
      assert.equal(b.connected, false);
      assert.equal(a.active, false);
      assert.equal(b.active, false);
    });

    test(`disconnect-me affects only the sender (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      const x = (await connectClient(server.url, mode, { t })).socket;
      const y = (await connectClient(server.url, mode, { t })).socket;
      const yDisc = collect(y, "disconnect");
      const dx = once(x, "disconnect", 5000);
      x.emit("disconnect-me");
      assert.equal((await dx)[0], "io server disconnect");
      await sleep(200);
      assert.deepStrictEqual(yDisc, []);
      assert.deepStrictEqual(await echo(y, 5000, "y ok"), ["y ok"]);
    });
  }
});

// Reconnection after a server restart: connect, stop the server (SIGTERM),
// start it again on the same port; the client reconnects by itself.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MODE_NAMES, startServer, connectClient, collect, once, echo, waitFor, waitUpgraded } from "./harness.mjs";

const T = { timeout: 40000 };

describe("reconnection", { concurrency: true }, () => {
  for (const mode of MODE_NAMES) {
    test(`client reconnects after the server restarts on the same port (${mode})`, T, async (t) => {
      const server = await startServer({ t });
      const AUTH = { who: "reconnector", mode };
      const { socket, auth } = await connectClient(server.url, mode, {
        t,
        auth: AUTH,
        reconnection: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 200,
        randomizationFactor: 0,
      });
      assert.deepStrictEqual(auth, AUTH);
      assert.deepStrictEqual(await echo(socket, 5000, "first life", 1), ["first life", 1]);
      const firstId = socket.id;
      const firstSid = socket.io.engine.id;

      const attempts = collect(socket.io, "reconnect_attempt");
      const failures = collect(socket.io, "reconnect_error");
      const reconnected = once(socket.io, "reconnect", 30000, "manager reconnect");
      const authAgain = once(socket, "auth", 30000, "auth after reconnect");
      const connectAgain = once(socket, "connect", 30000, "connect after reconnect");
      for (const p of [reconnected, authAgain, connectAgain]) p.catch(() => {});
      const disc = once(socket, "disconnect", 8000);
      const stopped = await server.stop("SIGTERM");
      assert.equal(stopped.killed, false, "server did not exit within 5 s of SIGTERM");
      assert.equal(stopped.code, 0, `server exit code after SIGTERM: ${JSON.stringify(stopped)}`);
      const [reason] = await disc;
      // reference (socket.io) server: "transport close" on websocket, "transport error"
      // on polling (the next poll is answered 400 / refused); never a server-side disconnect
      assert.ok(
        ["transport close", "transport error", "ping timeout"].includes(reason),
        `unexpected disconnect reason ${reason}`,
      );
      assert.equal(socket.active, true, "the client must want to reconnect");
      assert.equal(socket.connected, false);

      // no server: at least one attempt fails
      await waitFor(() => failures.length >= 1, 5000, "a failed reconnect attempt");
      assert.equal(socket.connected, false);

      const server2 = await startServer({ port: server.port, t });
      assert.equal(server2.port, server.port);
      const [attemptCount] = await reconnected;
      assert.ok(attemptCount >= 1);
      assert.ok(attempts.length >= 1);
      await connectAgain;
      assert.deepStrictEqual((await authAgain)[0], AUTH, "auth is sent again on reconnect");
      assert.equal(socket.connected, true);
      assert.notEqual(socket.id, firstId, "a new session gets a new socket id");
      assert.notEqual(socket.io.engine.id, firstSid);
      if (mode === "upgrade") await waitUpgraded(socket.io.engine, 8000);
      else assert.equal(socket.io.engine.transport.name, mode);

      assert.deepStrictEqual(await echo(socket, 5000, "second life", { n: 2 }), ["second life", { n: 2 }]);
      assert.equal(await socket.timeout(5000).emitWithAck("message-with-ack", "acked"), "acked");
    });
  }
});

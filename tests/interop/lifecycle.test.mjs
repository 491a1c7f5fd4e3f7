// Process lifecycle and command-line flags: the `listening on` line, clean
// exit on SIGTERM / SIGINT, --ping-interval / --ping-timeout / --max-payload.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MODE_NAMES, startServer, connectClient, collect, once, echo, sleep } from "./harness.mjs";

const T = { timeout: 20000 };

describe("lifecycle and flags", { concurrency: true }, () => {
  test("prints `listening on 127.0.0.1:PORT` with the requested port", T, async (t) => {
    const server = await startServer({ t });
    assert.equal(server.listenLine.port, server.port);
    assert.equal(server.listenLine.host, "127.0.0.1");
    assert.equal(server.listenLine.line, `listening on 127.0.0.1:${server.port}`);
  });

  for (const signal of ["SIGTERM", "SIGINT"]) {
    test(`exits with code 0 on ${signal} while clients are connected`, T, async (t) => {
      const server = await startServer({ t });
      const clients = await Promise.all(MODE_NAMES.map((m) => connectClient(server.url, m, { t })));
      for (const { socket } of clients) assert.deepStrictEqual(await echo(socket, 5000, "hi"), ["hi"]);
      const discs = clients.map(({ socket }) => once(socket, "disconnect", 8000));
      const res = await server.stop(signal);
      assert.equal(res.killed, false, `server did not exit within 5 s of ${signal}`);
      assert.deepStrictEqual({ code: res.code, signal: res.signal }, { code: 0, signal: null });
      // every client notices (transport-level reason, not a namespace disconnect)
      for (const [reason] of await Promise.all(discs)) {
        assert.ok(["transport close", "transport error", "ping timeout"].includes(reason), `reason ${reason}`);
      }
    });
  }

  for (const mode of MODE_NAMES) {
    test(`--ping-interval / --ping-timeout are advertised and used (${mode})`, T, async (t) => {
      const server = await startServer({ t, args: ["--ping-interval", "300", "--ping-timeout", "1000"] });
      const { socket, handshake } = await connectClient(server.url, mode, { t });
      assert.equal(handshake.pingInterval, 300);
      assert.equal(handshake.pingTimeout, 1000);
      assert.equal(handshake.maxPayload, 1000000);
      const pings = collect(socket.io.engine, "ping");
      const discs = collect(socket, "disconnect");
      await sleep(1800);
      // ~6 pings in 1.8 s at a 300 ms interval (the default would give none)
      assert.ok(pings.length >= 3 && pings.length <= 8, `got ${pings.length} pings in 1800 ms`);
      // the client answers the pings: still connected past interval + timeout (1.3 s)
      assert.deepStrictEqual(discs, []);
      assert.equal(socket.connected, true);
      assert.deepStrictEqual(await echo(socket, 5000, "alive"), ["alive"]);
    });

    test(`--max-payload is advertised and enforced (${mode})`, T, async (t) => {
      const server = await startServer({ t, args: ["--max-payload", "2000"] });
      const { socket, handshake } = await connectClient(server.url, mode, { t });
      assert.equal(handshake.maxPayload, 2000);
      assert.equal(handshake.pingInterval, 25000);
      const small = "s".repeat(1000);
      assert.deepStrictEqual(await echo(socket, 5000, small), [small]);
      const backs = collect(socket, "message-back");
      const disc = once(socket, "disconnect", 5000);
      socket.emit("message", "L".repeat(10000));
      const [reason] = await disc;
      // reference: websocket closed (1009) -> "transport close"; polling POST answered 413 -> "transport error"
      assert.ok(["transport close", "transport error"].includes(reason), `reason ${reason}`);
      await sleep(100);
      assert.deepStrictEqual(backs, [], "an oversized message must not be processed");
      // the server keeps serving other connections
      const other = await connectClient(server.url, mode, { t });
      assert.deepStrictEqual(await echo(other.socket, 5000, small), [small]);
    });
  }
});

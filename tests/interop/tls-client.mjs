// Run by tests/tls.rs (not part of the interop suite's *.test.mjs): the official client over
// https:// and wss:// against `shardcast serve --tls-cert ... --admin-ui` at URL (argv[2]),
// the certificate's CA trusted through NODE_EXTRA_CA_CERTS. In each transport mode: the
// `auth` event, an echo with a binary argument, an ack; then the admin UI's all_sockets
// shows the sockets' handshakes as secure. Prints "tls ok" and exits 0, or exits 1.

import assert from "node:assert/strict";
import { io } from "socket.io-client";

const url = process.argv[2];
const modes = { websocket: ["websocket"], polling: ["polling"], upgrade: ["polling", "websocket"] };
const opts = (transports) => ({ transports, forceNew: true, reconnection: false, timeout: 5000 });
const once = (s, ev) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${ev}`)), 8000);
    s.once(ev, (...a) => (clearTimeout(timer), resolve(a)));
    s.once("connect_error", (e) => (clearTimeout(timer), reject(new Error(`connect_error: ${e.message}`))));
  });

try {
  assert.ok(url.startsWith("https://"), url);
  const sockets = [];
  for (const [mode, transports] of Object.entries(modes)) {
    const s = io(url, { ...opts(transports), auth: { mode } });
    sockets.push(s);
    const [auth] = await once(s, "auth");
    assert.deepStrictEqual(auth, { mode });
    if (mode === "upgrade" && s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
    assert.equal(s.io.engine.transport.name, mode === "polling" ? "polling" : "websocket", mode);
    s.emit("message", "over tls", Buffer.from([1, 2, 3]));
    const [text, bin] = await once(s, "message-back");
    assert.equal(text, "over tls");
    assert.deepStrictEqual([...bin], [1, 2, 3]);
    assert.equal(await s.timeout(5000).emitWithAck("message-with-ack", mode), mode);
  }
  const admin = io(`${url}/admin`, opts(["websocket"]));
  const [all] = await once(admin, "all_sockets");
  for (const s of sockets) {
    const seen = all.find((x) => x.id === s.id);
    assert.ok(seen, `socket ${s.id} in all_sockets`);
    assert.equal(seen.handshake.secure, true, "handshake.secure");
    assert.equal(seen.handshake.address, "127.0.0.1", "the client's own address, not the relay's");
  }
  admin.disconnect();
  for (const s of sockets) s.disconnect();
  console.log("tls ok");
  process.exit(0);
} catch (e) {
  console.error(e);
  process.exit(1);
}

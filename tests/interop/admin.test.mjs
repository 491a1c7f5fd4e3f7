// The admin UI's protocol (@socket.io/admin-ui): the server runs with --admin-ui, and a
// socket.io-client on `/admin` plays the UI: what it is told (config, all_sockets,
// server_stats, socket and room and event updates) and what its actions do (emit, join,
// leave, _disconnect), with basic auth, readonly and production mode. Runs against any
// demo-app server: the Node reference peer runs the official package.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, connectClient, createSocket, once, collect, waitFor, emitAck, sleep } from "./harness.mjs";

const T = { timeout: 30000 };
// bcrypt of "s3cret" at cost 10 (made with bcryptjs).
const HASH = "$2a$10$Hfyub2sjIZ7tCTaJNugta.WjwemSXxlYsiiPO4lrbyLxcj7xTfANS";
const QUIET_MS = 600;

/** Connects the admin "UI" and resolves once it is connected, with what it was told. */
async function connectAdmin(t, url, opts = {}) {
  const admin = createSocket(`${url}/admin`, "websocket", opts);
  t.after(() => admin.disconnect());
  const told = {
    config: once(admin, "config", 5000, "config"),
    stats: collect(admin, "server_stats"),
    connected: collect(admin, "socket_connected"),
    updated: collect(admin, "socket_updated"),
    disconnected: collect(admin, "socket_disconnected"),
    joined: collect(admin, "room_joined"),
    left: collect(admin, "room_left"),
    received: collect(admin, "event_received"),
    sent: collect(admin, "event_sent"),
    allSockets: collect(admin, "all_sockets"),
    session: collect(admin, "session"),
  };
  await Promise.race([
    once(admin, "connect", 5000, "admin connect"),
    once(admin, "connect_error", 5000).then(([e]) => Promise.reject(new Error(`admin connect_error: ${e.message}`))),
  ]);
  return { admin, told };
}

const isDate = (s) => typeof s === "string" && !Number.isNaN(Date.parse(s)) && s.endsWith("Z");

describe("admin UI", { concurrency: true }, () => {
  test("development mode: config, all sockets, stats, live socket, room and event updates", T, async (t) => {
    const server = await startServer({ args: ["--admin-ui", "--shards", "2"], t });
    const early = await connectClient(server.url, "websocket", { t });
    const { admin, told } = await connectAdmin(t, server.url);
    const [config] = await told.config;
    for (const f of ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"]) {
      assert.ok(config.supportedFeatures.includes(f), `feature ${f} in ${JSON.stringify(config)}`);
    }

    // Every socket that was there before the UI came: the early client, with its details.
    await waitFor(() => told.allSockets.length > 0, 5000, "all_sockets");
    const [all] = told.allSockets[0];
    const mine = all.find((s) => s.id === early.socket.id);
    assert.ok(mine, `early client in all_sockets: ${JSON.stringify(all)}`);
    assert.equal(mine.nsp, "/");
    assert.equal(mine.transport, "websocket");
    assert.equal(typeof mine.clientId, "string");
    assert.ok(mine.rooms.includes(early.socket.id));
    assert.equal(typeof mine.handshake.address, "string");
    assert.equal(typeof mine.handshake.headers, "object");
    assert.ok(!("auth" in mine.handshake), "the handshake is shown without its auth");
    assert.ok(!("_admin" in mine.data), "data is shown without _admin");

    // Stats every 2 s.
    await waitFor(() => told.stats.length > 0, 5000, "server_stats");
    const [stats] = told.stats[0];
    assert.equal(typeof stats.serverId, "string");
    assert.equal(typeof stats.hostname, "string");
    assert.equal(typeof stats.pid, "number");
    assert.equal(typeof stats.uptime, "number");
    assert.ok(stats.clientsCount >= 2, `clientsCount ${stats.clientsCount}`);
    assert.equal(typeof stats.pollingClientsCount, "number");
    assert.ok(Array.isArray(stats.aggregatedEvents));
    const root = stats.namespaces.find((n) => n.name === "/");
    assert.ok(root && root.socketsCount >= 1, `namespaces ${JSON.stringify(stats.namespaces)}`);
    assert.ok(stats.namespaces.some((n) => n.name === "/admin"));

    // A client that connects now, over polling.
    const late = await connectClient(server.url, "polling", { t });
    const id = late.socket.id;
    await waitFor(() => told.connected.some(([s]) => s.id === id), 5000, "socket_connected");
    const [seen, at] = told.connected.find(([s]) => s.id === id);
    assert.equal(seen.nsp, "/");
    assert.equal(seen.transport, "polling");
    assert.ok(isDate(at), `timestamp ${at}`);

    // Its events, its rooms, what it is sent.
    assert.deepStrictEqual(await emitAck(late.socket, 5000, "join", "r1"), [true]);
    await waitFor(() => told.joined.some(([n, r, s]) => n === "/" && r === "r1" && s === id), 5000, "room_joined");
    await waitFor(
      () => told.received.some(([n, s, args]) => n === "/" && s === id && args[0] === "join" && args[1] === "r1"),
      5000,
      "event_received",
    );
    late.socket.emit("message", "hi", 3);
    await waitFor(
      () => told.sent.some(([n, s, args]) => s === id && JSON.stringify(args) === JSON.stringify(["message-back", "hi", 3])),
      5000,
      "event_sent",
    );
    assert.deepStrictEqual(await emitAck(late.socket, 5000, "leave", "r1"), [true]);
    await waitFor(() => told.left.some(([n, r, s]) => n === "/" && r === "r1" && s === id), 5000, "room_left");

    // The admin's own traffic is not in the event log.
    assert.ok(!told.received.some(([n]) => n === "/admin"));

    late.socket.disconnect();
    await waitFor(() => told.disconnected.some(([n, s]) => n === "/" && s === id), 5000, "socket_disconnected");
    const [, , reason, when] = told.disconnected.find(([n, s]) => n === "/" && s === id);
    assert.equal(reason, "client namespace disconnect");
    assert.ok(isDate(when));
    admin.disconnect();
  });

  test("actions: emit to a room, join and leave by filter, disconnect", T, async (t) => {
    const server = await startServer({ args: ["--admin-ui"], t });
    const a = await connectClient(server.url, "websocket", { t });
    const b = await connectClient(server.url, "upgrade", { t });
    const { admin, told } = await connectAdmin(t, server.url);
    await told.config;
    assert.deepStrictEqual(await emitAck(a.socket, 5000, "join", "r1"), [true]);

    const gotA = collect(a.socket, "hello");
    const gotB = collect(b.socket, "hello");
    admin.emit("emit", "/", "r1", "hello", 1, { two: 2 });
    await waitFor(() => gotA.length === 1, 5000, "emit reaches the room");
    assert.deepStrictEqual(gotA[0], [1, { two: 2 }]);
    await sleep(QUIET_MS);
    assert.equal(gotB.length, 0, "emit reaches only the room");

    // join: every socket of room `filter` (here b's own room) joins r2.
    admin.emit("join", "/", "r2", b.socket.id);
    await waitFor(() => told.joined.some(([, r, s]) => r === "r2" && s === b.socket.id), 5000, "b joined r2");
    const [who] = await emitAck(b.socket, 5000, "whoami");
    assert.deepStrictEqual(who.rooms, ["r2"]);
    admin.emit("leave", "/", "r2", b.socket.id);
    await waitFor(() => told.left.some(([, r, s]) => r === "r2" && s === b.socket.id), 5000, "b left r2");

    // _disconnect (close=false) of room r1: a goes, b stays.
    const aId = a.socket.id; // the client forgets it on disconnect
    const gone = once(a.socket, "disconnect", 5000, "a disconnected");
    admin.emit("_disconnect", "/", false, "r1");
    const [reason] = await gone;
    assert.equal(reason, "io server disconnect");
    await waitFor(() => told.disconnected.some(([, s]) => s === aId), 5000, "socket_disconnected for a");
    const [, , why] = told.disconnected.find(([, s]) => s === aId);
    assert.equal(why, "server namespace disconnect");
    await sleep(QUIET_MS);
    assert.ok(b.socket.connected);
    admin.disconnect();
  });

  test("basic auth: wrong password refused, right one gives a session that logs in again", T, async (t) => {
    const server = await startServer({
      args: ["--admin-ui", "--admin-ui-username", "admin", "--admin-ui-password-hash", HASH],
      t,
    });
    const wrong = createSocket(`${server.url}/admin`, "websocket", { auth: { username: "admin", password: "nope" } });
    t.after(() => wrong.disconnect());
    const [err] = await once(wrong, "connect_error", 5000, "refused");
    assert.equal(err.message, "invalid credentials");
    const none = createSocket(`${server.url}/admin`, "websocket");
    t.after(() => none.disconnect());
    const [err2] = await once(none, "connect_error", 5000, "refused without credentials");
    assert.equal(err2.message, "invalid credentials");

    const { admin, told } = await connectAdmin(t, server.url, { auth: { username: "admin", password: "s3cret" } });
    await told.config;
    await waitFor(() => told.session.length === 1, 5000, "session");
    const [sessionId] = told.session[0];
    assert.match(sessionId, /^[0-9a-f]{16}$/);
    admin.disconnect();
    const again = await connectAdmin(t, server.url, { auth: { sessionId } });
    await again.told.config;
    again.admin.disconnect();
    const forged = createSocket(`${server.url}/admin`, "websocket", { auth: { sessionId: "0000000000000000" } });
    t.after(() => forged.disconnect());
    const [err3] = await once(forged, "connect_error", 5000, "unknown session refused");
    assert.equal(err3.message, "invalid credentials");
  });

  test("readonly: no actions offered and none taken", T, async (t) => {
    const server = await startServer({ args: ["--admin-ui", "--admin-ui-readonly"], t });
    const a = await connectClient(server.url, "websocket", { t });
    const { admin, told } = await connectAdmin(t, server.url);
    const [config] = await told.config;
    assert.deepStrictEqual(config.supportedFeatures, ["AGGREGATED_EVENTS", "ALL_EVENTS"]);
    admin.emit("_disconnect", "/", true);
    admin.emit("join", "/", "r9");
    await sleep(QUIET_MS);
    assert.ok(a.socket.connected, "readonly: _disconnect ignored");
    const [who] = await emitAck(a.socket, 5000, "whoami");
    assert.deepStrictEqual(who.rooms, []);
    admin.disconnect();
  });

  test("production mode: only the aggregated stats", T, async (t) => {
    const server = await startServer({ args: ["--admin-ui", "--admin-ui-mode", "production", "--admin-ui-server-id", "srv-7"], t });
    const { admin, told } = await connectAdmin(t, server.url);
    const [config] = await told.config;
    assert.ok(!config.supportedFeatures.includes("ALL_EVENTS"));
    assert.ok(config.supportedFeatures.includes("AGGREGATED_EVENTS"));
    const c = await connectClient(server.url, "websocket", { t });
    c.socket.emit("message", "x");
    await once(c.socket, "message-back");
    // The stats that follow count the client's connection and its packets.
    await waitFor(
      () => told.stats.some(([s]) => s.aggregatedEvents.some((e) => e.type === "rawConnection" && e.count >= 1)),
      6000,
      "rawConnection in aggregated events",
    );
    await waitFor(
      () => told.stats.some(([s]) => s.aggregatedEvents.some((e) => e.type === "packetsIn")),
      6000,
      "packetsIn in aggregated events",
    );
    const [last] = told.stats[told.stats.length - 1];
    assert.equal(last.serverId, "srv-7");
    for (const e of last.aggregatedEvents) {
      assert.equal(typeof e.timestamp, "number");
      assert.equal(typeof e.count, "number");
    }
    assert.equal(told.allSockets.length, 0);
    assert.equal(told.connected.length, 0);
    assert.equal(told.received.length, 0);
    admin.disconnect();
  });
});

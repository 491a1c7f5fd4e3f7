// Helpers of the API scenarios (tests/interop/api/*.mjs): connecting official
// socket.io-client sockets to the "operator playground" of tests/interop_api.rs
// (SERVER_URL), calling its operations, recording what each client receives,
// and checking deliveries exactly. Every wait has a timeout; every socket is
// closed at the end of its test (and of the file).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import net from "node:net";
import { after } from "node:test";
import { io, Manager } from "socket.io-client";

export { io, Manager };

export const URL = process.env.SERVER_URL;
if (!URL) {
  throw new Error("SERVER_URL is not set: these scenarios run through `cargo test --test interop_api`");
}

export const WAIT_MS = 5000;
const HARD_DEADLINE_MS = 90000;

/** Transport modes: every client on websocket, every client on polling, or alternating. */
export const MODES = ["websocket", "polling", "mixed"];

export function transportOf(mode, i) {
  if (mode === "mixed") return i % 2 === 0 ? "websocket" : "polling";
  return mode;
}

let seq = 0;
/** A name no other test (or concurrently running file) uses. */
export function uid(prefix = "x") {
  return `${prefix}-${process.pid}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A dynamic namespace of the playground (`/dyn-<digits>`) no other test uses. */
export function dynName() {
  return `/dyn-${process.pid}${++seq}${Math.floor(Math.random() * 1e6)}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();

function closeSocket(socket) {
  try {
    socket.disconnect();
  } catch {
    // ignore
  }
  live.delete(socket);
}

/** Closes the sockets of `clients` (client records or raw sockets / managers). */
export function closeAll(clients) {
  for (const c of clients) {
    if (c instanceof Manager) {
      c.engine?.close();
    } else {
      closeSocket(c.socket ?? c);
    }
  }
}

/**
 * Connects to namespace `nsp` and resolves once the server's `welcome` arrived
 * (the connection handler ran). Every incoming event is recorded in `events`
 * as [event, ...args]. With `manager`, the socket is multiplexed on it.
 * With `t` (a node:test context) the socket is closed after that test.
 */
export async function connect(nsp = "/", { transport = "websocket", auth, manager, t, timeoutMs = WAIT_MS } = {}) {
  const opts = auth === undefined ? {} : { auth };
  const socket = manager
    ? manager.socket(nsp, opts)
    : io(URL + nsp, { forceNew: true, reconnection: false, timeout: WAIT_MS, transports: [transport], ...opts });
  live.add(socket);
  if (t) t.after(() => closeSocket(socket));
  const events = [];
  socket.onAny((event, ...args) => events.push([event, ...args]));
  const welcome = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`timed out after ${timeoutMs} ms connecting to ${nsp} over ${transport}`));
    }, timeoutMs);
    socket.once("welcome", (w) => {
      clearTimeout(timer);
      resolve(w);
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error on ${nsp}: ${err.message}`));
    });
  });
  assert.equal(welcome.id, socket.id, "welcome carries the socket id");
  assert.equal(welcome.nsp, nsp);
  return { socket, id: socket.id, nsp, transport, events, welcome };
}

/**
 * Opens and closes one TCP connection to the server. The server deals
 * connections round-robin to its shards, and a polling client opens a new
 * connection per HTTP request (xmlhttprequest-ssl uses no keep-alive agent):
 * when each client happens to make a multiple of the shard count of requests
 * while connecting, consecutive polling clients all land on the same shard.
 * One extra connection between them shifts the round-robin.
 */
export function nudge() {
  const { hostname, port } = new globalThis.URL(URL);
  return new Promise((resolve) => {
    const sock = net.connect({ host: hostname, port: Number(port) }, () => {
      sock.end();
      resolve();
    });
    sock.on("error", () => resolve());
    sock.setTimeout(1000, () => {
      sock.destroy();
      resolve();
    });
  });
}

/** Connects `n` clients to `nsp`, transports per `mode` (polling ones spread over shards). */
export async function connectMany(n, mode, { nsp = "/", t, auth } = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const transport = transportOf(mode, i);
    if (transport === "polling" && i > 0) await nudge();
    out.push(await connect(nsp, { transport, t, auth }));
  }
  return out;
}

/**
 * Expects the connection to `nsp` to be refused: resolves with the
 * `connect_error` Error (message, data).
 */
export async function connectError(nsp, { transport = "websocket", auth, manager, t, timeoutMs = WAIT_MS } = {}) {
  const opts = auth === undefined ? {} : { auth };
  const socket = manager
    ? manager.socket(nsp, opts)
    : io(URL + nsp, { forceNew: true, reconnection: false, timeout: WAIT_MS, transports: [transport], ...opts });
  live.add(socket);
  if (t) t.after(() => closeSocket(socket));
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect_error for ${nsp} within ${timeoutMs} ms`)), timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      reject(new Error(`${nsp} connected but should have been refused`));
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

/** Emits `event` with an ack and resolves with the (first) ack argument. */
export async function call(c, event, ...args) {
  try {
    return await (c.socket ?? c).timeout(WAIT_MS).emitWithAck(event, ...args);
  } catch (e) {
    throw new Error(`no ack for ${event} within ${WAIT_MS} ms: ${e.message}`);
  }
}

/** Argument lists of every `event` the client received so far. */
export function got(c, event) {
  return c.events.filter((e) => e[0] === event).map((e) => e.slice(1));
}

/** Polls `pred` every 10 ms until truthy; rejects after timeoutMs. */
export async function waitFor(pred, what = "condition", timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves with the args of the next `event` on `emitter`; rejects after timeoutMs. */
export function once(emitter, event, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const on = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${event}`));
    }, timeoutMs);
    emitter.once(event, on);
  });
}

/** `op` through `requester`; asserts the server accepted it. */
export async function op(requester, spec, ...args) {
  const res = await call(requester, "op", spec, ...args);
  assert.equal(res, true, `op ${JSON.stringify(spec)} refused: ${res}`);
}

/**
 * Waits until each of `clients` has received whatever `requester` broadcast
 * before: a marker event sent by the same requester to exactly these sockets
 * (by id, one broadcast per namespace). The server keeps the order of the
 * broadcasts of one sender towards each socket, so once a client has the
 * marker, an earlier broadcast has either reached it or never will. With
 * `thread`, the marker is sent like the broadcasts emitted from a thread that
 * is not a shard (`op` with `thread: true`), whose order it then shares.
 */
export async function flush(requester, clients, { thread = false } = {}) {
  const marker = uid("marker");
  const byNsp = new Map();
  clients = [...new Map(clients.map((c) => [`${c.nsp} ${c.id}`, c])).values()];
  for (const c of clients) {
    if (!c.socket.connected) continue;
    if (!byNsp.has(c.nsp)) byNsp.set(c.nsp, []);
    byNsp.get(c.nsp).push(c.id);
  }
  for (const [nsp, ids] of byNsp) {
    await op(requester, { from: "io", nsp, to: ids, event: marker, args: [], thread });
  }
  await waitFor(
    () => clients.every((c) => !c.socket.connected || got(c, marker).length > 0),
    `flush marker ${marker} at ${clients.filter((c) => got(c, marker).length === 0).map((c) => c.id)}`,
  );
  for (const c of clients) {
    if (c.socket.connected) assert.equal(got(c, marker).length, 1, `marker received twice by ${c.id}`);
  }
}

/**
 * Checks a delivery exactly: after a flush from `requester`, each client of
 * `recipients` received `event` exactly once, with `args` (binary compared
 * byte for byte), and each of `others` never received it.
 */
export async function expectDelivery({ requester, event, recipients, others, args, thread = false }) {
  await flush(requester, [...recipients, ...others, requester], { thread });
  for (const c of recipients) {
    const g = got(c, event);
    assert.equal(g.length, 1, `${c.nsp} ${c.id} must receive "${event}" exactly once, got ${g.length}`);
    if (args !== undefined) assertSameWithBinary(g[0], args, `args of "${event}" at ${c.id}`);
  }
  for (const c of others) {
    assert.equal(got(c, event).length, 0, `${c.nsp} ${c.id} must not receive "${event}"`);
  }
}

/** Polls the room events of `c`'s namespace (filtered) until there are `n`, then checks no more come. */
export async function roomEvents(c, filter, n) {
  let events = [];
  await waitFor(
    async () => {
      events = await call(c, "room-events", filter);
      return events.length >= n;
    },
    `${n} room events for ${JSON.stringify(filter)} (have ${JSON.stringify(events)})`,
  );
  await sleep(150);
  return await call(c, "room-events", filter);
}

// ---------------------------------------------------------------------------
// Binary comparison

function isBinary(v) {
  return Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

function toBytes(v) {
  if (v instanceof ArrayBuffer) return Buffer.from(new Uint8Array(v));
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** Maps binaries to { $binary: hex (or length + sha256) } so deepStrictEqual compares bytes. */
export function normalizeBinary(v) {
  if (isBinary(v)) {
    const b = toBytes(v);
    if (b.length <= 64) return { $binary: b.toString("hex") };
    return { $binary: `${b.length} bytes, sha256 ${createHash("sha256").update(b).digest("hex")}` };
  }
  if (Array.isArray(v)) return v.map(normalizeBinary);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalizeBinary(x)]));
  return v;
}

export function assertSameWithBinary(actual, expected, msg) {
  assert.deepStrictEqual(normalizeBinary(actual), normalizeBinary(expected), msg);
}

/** Sorted copy. */
export const sorted = (a) => [...a].sort();

// ---------------------------------------------------------------------------
// Cleanup and a hard deadline per file.

after(() => {
  for (const s of [...live]) closeSocket(s);
});

setTimeout(() => {
  console.error(`api scenarios: hard deadline of ${HARD_DEADLINE_MS} ms reached`);
  process.exit(1);
}, HARD_DEADLINE_MS).unref();

// Shared helpers for the interop suite: starting/stopping the server under
// test, connecting official socket.io-client sockets in the three transport
// modes, waiting for events with timeouts, comparing binary payloads.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_CMD = ["node", path.resolve(HERE, "../../loadtest/peers/node/server.js")];

export const LISTEN_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 5000;
const HARD_DEADLINE_MS = 60000;

/** argv of the server under test: env SERVER_CMD (JSON array) or the Node reference peer. */
export function serverCommand() {
  const raw = process.env.SERVER_CMD;
  if (!raw) return DEFAULT_CMD;
  let argv;
  try {
    argv = JSON.parse(raw);
  } catch (e) {
    throw new Error(`SERVER_CMD must be a JSON array of strings, got ${raw}: ${e.message}`);
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new Error(`SERVER_CMD must be a non-empty JSON array of strings, got ${raw}`);
  }
  return argv;
}

/** A TCP port that was free a moment ago (bind port 0, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------
// Server processes

// When a server never prints its `listening on` line, the other test files of
// the same `node --test` run (separate processes, same parent) should not wait
// 15 s each again: the first timeout leaves a marker in the temp dir, keyed by
// the runner's pid and only honoured for 3 minutes. Only used under the
// `node --test` runner (which sets NODE_TEST_CONTEXT in its per-file children).
const LISTEN_TIMEOUT_MARKER = process.env.NODE_TEST_CONTEXT
  ? path.join(os.tmpdir(), `shardcast-interop-listen-timeout-${process.ppid}`)
  : null;
const MARKER_MAX_AGE_MS = 3 * 60 * 1000;

function earlierListenTimeout() {
  if (!LISTEN_TIMEOUT_MARKER) return null;
  try {
    const st = fs.statSync(LISTEN_TIMEOUT_MARKER);
    if (Date.now() - st.mtimeMs < MARKER_MAX_AGE_MS) return fs.readFileSync(LISTEN_TIMEOUT_MARKER, "utf8");
    fs.rmSync(LISTEN_TIMEOUT_MARKER, { force: true });
  } catch {
    // no marker
  }
  return null;
}

const liveServers = new Set();
const liveSockets = new Set();

function tail(s, n = 4000) {
  return s.length > n ? "..." + s.slice(-n) : s;
}

class ServerHandle {
  constructor(proc, port, argv) {
    this.proc = proc;
    this.port = port;
    this.argv = argv;
    this.url = `http://127.0.0.1:${port}`;
    this.stdout = "";
    this.stderr = "";
    this.listenLine = null;
    this.exited = new Promise((resolve) => {
      proc.on("exit", (code, signal) => {
        liveServers.delete(this);
        resolve({ code, signal });
      });
    });
  }

  describe() {
    return `server [${this.argv.join(" ")}]\n--- stdout ---\n${tail(this.stdout)}\n--- stderr ---\n${tail(this.stderr)}`;
  }

  /**
   * Sends `signal` (SIGTERM by default) and waits for the process to exit;
   * SIGKILLs it after 5 s. Resolves with { code, signal, killed }.
   */
  async stop(signal = "SIGTERM") {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
      return { ...(await this.exited), killed: false };
    }
    this.proc.kill(signal);
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve("timeout"), STOP_TIMEOUT_MS);
    });
    const res = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (res === "timeout") {
      this.proc.kill("SIGKILL");
      return { ...(await this.exited), killed: true };
    }
    return { ...res, killed: false };
  }
}

/**
 * Starts the server under test: SERVER_CMD + `--port <port>` + extraArgs.
 * Resolves once it printed `listening on HOST:PORT` (15 s timeout).
 * `port` defaults to a fresh free port. When `t` (a node:test context) is
 * given the server is stopped after that test.
 */
export async function startServer({ args = [], port, t } = {}) {
  const cmd = serverCommand();
  const earlier = earlierListenTimeout();
  if (earlier) {
    throw new Error(
      `not starting the server: an earlier start in this run never printed "listening on" (${LISTEN_TIMEOUT_MARKER})\n${earlier}`,
    );
  }
  // A port from freePort() can be taken by someone else before the server binds
  // it: retry once with another port when the server says so.
  for (let attempt = 1; ; attempt++) {
    const p = port ?? (await freePort());
    try {
      return await spawnServer([...cmd, "--port", String(p), ...args], p, t);
    } catch (err) {
      if (port !== undefined || attempt >= 2 || !err.addrInUse) throw err;
    }
  }
}

async function spawnServer(argv, p, t) {
  const proc = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  const server = new ServerHandle(proc, p, argv);
  liveServers.add(server);
  if (t) t.after(() => server.stop());

  proc.stdout.setEncoding("utf8");
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (d) => {
    server.stderr = tail(server.stderr + d, 20000);
  });

  await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      const msg = `no "listening on" line within ${LISTEN_TIMEOUT_MS} ms\n${server.describe()}`;
      try {
        if (LISTEN_TIMEOUT_MARKER) fs.writeFileSync(LISTEN_TIMEOUT_MARKER, msg);
      } catch {
        // best effort
      }
      reject(new Error(msg));
    }, LISTEN_TIMEOUT_MS);
    const onData = (d) => {
      server.stdout = tail(server.stdout + d, 20000);
      if (server.listenLine) return;
      buf += d;
      const m = /listening on (\S+):(\d+)/.exec(buf);
      if (m) {
        server.listenLine = { host: m[1], port: Number(m[2]), line: m[0] };
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout.on("data", onData);
    proc.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot spawn ${argv.join(" ")}: ${err.message}`));
    });
    proc.on("exit", (code, signal) => {
      if (server.listenLine) return;
      clearTimeout(timer);
      // give stderr a moment to be drained into the message
      setTimeout(() => {
        const err = new Error(`server exited (code ${code}, signal ${signal}) before listening\n${server.describe()}`);
        err.addrInUse = /EADDRINUSE|address already in use|address in use/i.test(server.stdout + server.stderr);
        reject(err);
      }, 50);
    });
  });
  return server;
}

// ---------------------------------------------------------------------------
// Clients

/** The three transport modes. */
export const MODES = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  upgrade: {}, // polling first, then upgrade to websocket
};
export const MODE_NAMES = Object.keys(MODES);

/**
 * Creates a socket (not waiting for anything) and registers it for cleanup.
 * Defaults: forceNew, no reconnection (tests that need it turn it on).
 */
export function createSocket(url, mode, opts = {}) {
  const socket = io(url, {
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    ...MODES[mode],
    ...opts,
  });
  track(socket);
  return socket;
}

/** Registers a socket so it is disconnected when the test file finishes. */
export function track(socket) {
  liveSockets.add(socket);
  return socket;
}

export function closeSocket(socket) {
  try {
    socket.disconnect();
    socket.io?.engine?.close();
  } catch {
    // ignore
  }
  liveSockets.delete(socket);
}

/**
 * Connects to `url` (namespace in the URL) in the given transport mode and
 * resolves with { socket, auth, handshake } once `connect` and the server's
 * `auth` event were received; in "upgrade" mode also once the engine
 * reported the `upgrade` event and really runs on websocket.
 * Asserts the transport in use matches the mode.
 */
export async function connectClient(url, mode, { timeoutMs = 5000, t, ...opts } = {}) {
  const socket = createSocket(url, mode, opts);
  if (t) t.after(() => closeSocket(socket));
  const engine = socket.io.engine;
  const handshake = once(engine, "handshake", timeoutMs, `${mode}: engine handshake`);
  const upgraded = mode === "upgrade" ? once(engine, "upgrade", timeoutMs, "upgrade: engine upgrade event") : null;
  const authP = once(socket, "auth", timeoutMs, `${mode}: auth event`);
  const connectP = once(socket, "connect", timeoutMs, `${mode}: connect`);
  const connectErr = new Promise((_, reject) => {
    socket.once("connect_error", (err) => reject(new Error(`${mode}: connect_error: ${err.message}`)));
  });
  // avoid unhandled rejections for promises we may never await
  for (const p of [handshake, upgraded, authP, connectP, connectErr]) p?.catch(() => {});
  const [hs] = await Promise.race([handshake, connectErr]);
  // the transport that carried the handshake
  const firstTransport = engine.transport.name;
  await Promise.race([connectP, connectErr]);
  const [auth] = await Promise.race([authP, connectErr]);
  if (mode === "upgrade") {
    assert.equal(firstTransport, "polling", "upgrade mode must start on polling");
    await upgraded;
    assert.equal(socket.io.engine.transport.name, "websocket", "upgrade event seen but transport is not websocket");
  } else {
    assert.equal(firstTransport, mode);
    assert.equal(socket.io.engine.transport.name, mode);
  }
  return { socket, auth, handshake: hs };
}

/** Waits for the engine of `socket` to run on websocket (upgrade mode after a reconnect). */
export async function waitUpgraded(engine, timeoutMs = 8000) {
  if (engine.transport?.name !== "websocket") {
    await once(engine, "upgrade", timeoutMs, "engine upgrade");
  }
  assert.equal(engine.transport.name, "websocket");
}

// ---------------------------------------------------------------------------
// Event utilities

/**
 * Resolves with the argument array of the next `event` on `emitter`
 * (socket.io-client Socket / Manager / engine, or a Node EventEmitter);
 * rejects after `timeoutMs`.
 */
export function once(emitter, event, timeoutMs = 5000, what = event) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    emitter.once(event, onEvent);
  });
}

/** Records every occurrence of `event` on `socket`: returns an array of argument arrays. */
export function collect(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

/** Polls `pred` every 10 ms until it returns truthy; rejects after timeoutMs. */
export async function waitFor(pred, timeoutMs = 5000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** socket.emit(...) with an ack callback, resolving with ALL ack arguments. */
export function emitAck(socket, timeoutMs, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(timeoutMs).emit(event, ...args, (err, ...res) => {
      if (err) reject(new Error(`no ack for ${event} within ${timeoutMs} ms: ${err.message}`));
      else resolve(res);
    });
  });
}

/** Emits `message` and resolves with the args of the next `message-back`. */
export async function echo(socket, timeoutMs, ...args) {
  const back = once(socket, "message-back", timeoutMs, "message-back");
  socket.emit("message", ...args);
  return await back;
}

// ---------------------------------------------------------------------------
// Binary comparison

function isBinary(v) {
  return (
    (typeof Buffer !== "undefined" && Buffer.isBuffer(v)) ||
    v instanceof ArrayBuffer ||
    ArrayBuffer.isView(v)
  );
}

function toBytes(v) {
  if (v instanceof ArrayBuffer) return Buffer.from(new Uint8Array(v));
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Maps every binary value (Buffer, ArrayBuffer, typed array) to
 * { $binary: <hex, or length + sha256 when long> } so deepStrictEqual compares bytes and still tells a
 * binary apart from e.g. an array of numbers or a base64 string.
 */
export function normalizeBinary(v) {
  if (isBinary(v)) {
    const bytes = toBytes(v);
    // short: the bytes themselves (readable diffs); long: length + digest
    if (bytes.length <= 64) return { $binary: bytes.toString("hex") };
    return { $binary: `${bytes.length} bytes, sha256 ${createHash("sha256").update(bytes).digest("hex")}` };
  }
  if (Array.isArray(v)) return v.map(normalizeBinary);
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = normalizeBinary(x);
    return out;
  }
  return v;
}

export function assertSameWithBinary(actual, expected, msg) {
  assert.deepStrictEqual(normalizeBinary(actual), normalizeBinary(expected), msg);
}

// ---------------------------------------------------------------------------
// Cleanup: disconnect clients and stop servers at the end of every test file,
// kill leftovers on exit, and never let a file run longer than HARD_DEADLINE_MS.

export async function cleanupAll() {
  for (const s of [...liveSockets]) closeSocket(s);
  await Promise.all([...liveServers].map((s) => s.stop()));
}

after(cleanupAll);

process.on("exit", () => {
  for (const s of liveServers) {
    try {
      s.proc.kill("SIGKILL");
    } catch {
      // ignore
    }
  }
});

setTimeout(() => {
  console.error(`interop harness: hard deadline of ${HARD_DEADLINE_MS} ms reached, killing servers`);
  for (const s of liveServers) s.proc.kill("SIGKILL");
  process.exit(1);
}, HARD_DEADLINE_MS).unref();

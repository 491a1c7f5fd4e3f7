// The demo page (examples/lobby-web) and the official admin UI (@socket.io/admin-ui's
// ui/dist), each served by `shardcast serve --static DIR`, in headless Chromium: Debian's
// `chromium` (CHROMIUM, default /usr/bin/chromium) driven by puppeteer-core, no browser
// download. Screenshots go to SCREENSHOTS (default target/browser-screenshots; the copies in
// docs/screenshots/, linked from docs/operations.md, are refreshed with SCREENSHOTS=docs/screenshots).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { io } from "socket.io-client";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const SHARDCAST = process.env.SHARDCAST ?? path.join(ROOT, "target/release/shardcast");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS ?? path.join(ROOT, "target/browser-screenshots");
const T = { timeout: 60000 };

const procs = new Set();
let browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function serve(args) {
  const port = await freePort();
  const proc = spawn(SHARDCAST, ["serve", "--port", String(port), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  procs.add(proc);
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on": ${err}`)), 15000);
    proc.stdout.on("data", (d) => /listening on/.test(String(d)) && (clearTimeout(timer), resolve()));
    proc.on("exit", (code) => reject(new Error(`shardcast exited ${code}: ${err}`)));
  });
  return `http://127.0.0.1:${port}`;
}

/** A page that loads only what is on 127.0.0.1 (the admin UI asks for web fonts). */
async function page(url) {
  const p = await browser.newPage();
  await p.setViewport({ width: 1100, height: 700 });
  await p.setRequestInterception(true);
  p.on("request", (r) => (new URL(r.url()).hostname === "127.0.0.1" ? r.continue() : r.abort()));
  if (url) await p.goto(url, { waitUntil: "domcontentloaded" });
  return p;
}

const text = (p, sel) => p.$eval(sel, (e) => e.textContent);

/** Waits for `fn` in page `p`; on a timeout, says what it waited for and what the page shows. */
async function waitIn(p, what, fn, ...args) {
  try {
    // Polled by time: a page in the background gets no animation frames.
    await p.waitForFunction(fn, { timeout: 10000, polling: 100 }, ...args);
  } catch (e) {
    const shown = await p.evaluate(() => document.body.innerText).catch(() => "?");
    throw new Error(`${what} (${p.url()}): ${e.message}\npage shows: ${JSON.stringify(shown)}`);
  }
}
const waitText = (p, sel, want) =>
  waitIn(p, `${sel} reads ${want}`, (s, w) => document.querySelector(s)?.textContent === w, sel, want);
const waitLine = (p, needle) =>
  waitIn(p, `a line with ${needle}`, (n) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes(n)), needle);

async function say(p, words) {
  // Typing and screenshots need the page in front.
  await p.bringToFront();
  await p.type("#text", words);
  await p.click("#send");
}

async function shot(p, name) {
  await p.bringToFront();
  await p.screenshot({ path: path.join(SHOTS, name) });
}

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container has no user namespace sandbox.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  for (const p of procs) p.kill("SIGTERM");
});

describe("in Chromium", { concurrency: false }, () => {
  test("lobby page: chat over WebSocket and polling, member count and rate, reload reconnects", T, async () => {
    const url = await serve(["--static", path.join(ROOT, "examples/lobby-web")]);
    const ann = await page(`${url}/?name=ann&room=lobby&transport=websocket`);
    const bob = await page(`${url}/?name=bob&room=lobby&transport=websocket`);
    const cy = await page(`${url}/?name=cy&room=lobby&transport=polling`);
    for (const p of [ann, bob, cy]) await waitText(p, "#members", "3");
    assert.equal(await text(ann, "#transport"), "websocket");
    assert.equal(await text(cy, "#transport"), "polling");
    assert.equal(await text(ann, "#status"), "connected");

    await say(ann, "hello from ann");
    for (const p of [ann, bob, cy]) await waitLine(p, "hello from ann");
    await say(cy, "polling says hi");
    for (const p of [ann, bob]) await waitLine(p, "polling says hi");
    for (let i = 0; i < 5; i++) await say(bob, `burst ${i}`);
    await waitLine(ann, "burst 4");
    await waitIn(ann, "a message rate", () => Number(document.querySelector("#rate").textContent) > 0);
    await shot(ann, "lobby-websocket.png");
    await shot(cy, "lobby-polling.png");

    // A reload drops bob's connection; the page comes back, joins again, and chats.
    await bob.reload({ waitUntil: "domcontentloaded" });
    await waitText(bob, "#status", "connected");
    await waitText(bob, "#members", "3");
    await waitText(ann, "#members", "3");
    await say(ann, "welcome back bob");
    await waitLine(bob, "welcome back bob");
    await say(bob, "bob again");
    await waitLine(cy, "bob again");
    await shot(bob, "lobby-after-reload.png");
    for (const p of [ann, bob, cy]) await p.close();
  });

  test("the official admin UI: servers, sockets, and its disconnect action", T, async () => {
    const dist = path.join(HERE, "node_modules/@socket.io/admin-ui/ui/dist");
    const url = await serve(["--admin-ui", "--admin-ui-server-id", "sc-browser", "--static", dist, "--shards", "2"]);
    const client = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    await new Promise((resolve, reject) => (client.on("connect", resolve), client.on("connect_error", reject)));
    const id = client.id;
    assert.equal(await client.timeout(5000).emitWithAck("join", "browser-room"), true);
    try {
      const ui = await page();
      // The UI connects on load to the server it saved last time.
      await ui.evaluateOnNewDocument((u) => localStorage.setItem("server_url", u), url);
      await ui.goto(`${url}/#/servers/`, { waitUntil: "domcontentloaded" });
      await ui.waitForFunction(() => document.body.innerText.includes("sc-browser"), { timeout: 15000, polling: 100 });
      await shot(ui, "admin-servers.png");
      await ui.goto(`${url}/#/sockets/`, { waitUntil: "domcontentloaded" });
      await ui.waitForFunction((i) => document.body.innerText.includes(i), { timeout: 15000, polling: 100 }, id);
      await shot(ui, "admin-sockets.png");
      await ui.goto(`${url}/#/rooms/`, { waitUntil: "domcontentloaded" });
      await ui.waitForFunction(() => document.body.innerText.includes("browser-room"), { timeout: 15000, polling: 100 });
      // The socket's page, and its Disconnect button.
      await ui.goto(`${url}/#/n/%2F/sockets/${id}`, { waitUntil: "domcontentloaded" });
      await ui.waitForFunction((i) => document.body.innerText.includes(i), { timeout: 15000, polling: 100 }, id);
      await shot(ui, "admin-socket.png");
      // Join a room from the socket's page (its "Join a room" field and button).
      await ui.waitForSelector(".select-room input", { timeout: 10000 });
      await ui.type(".select-room input", "joined-from-ui");
      await ui.$eval(".mdi-tag-plus-outline", (i) => i.closest("button").click());
      await waitIn(ui, "the room the UI joined", () => document.body.innerText.includes("joined-from-ui"));
      const [who] = [await client.timeout(5000).emitWithAck("whoami")];
      assert.deepStrictEqual(who.rooms, ["browser-room", "joined-from-ui"]);
      // Its disconnect button (an icon: the tooltip says "Disconnect this client").
      const gone = new Promise((resolve) => client.once("disconnect", resolve));
      await ui.waitForSelector(".mdi-logout", { timeout: 10000 });
      await ui.$eval(".mdi-logout", (i) => i.closest("button").click());
      assert.equal(await gone, "io server disconnect");
      await ui.close();
    } finally {
      client.disconnect();
    }
  });

  test("socket.io-client 2.x in the browser (Engine.IO v3, --allow-eio3): XHR2 binary payloads, the upgrade, JSONP", T, async () => {
    // A page with the 2.x client's browser bundle; it polls with XHR2, so the server sends
    // (and it posts) binary in the v3 binary payload form, not base64.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shardcast-v2-page-"));
    fs.copyFileSync(path.join(HERE, "node_modules/socket.io-client-v2/dist/socket.io.js"), path.join(dir, "sio2.js"));
    fs.writeFileSync(
      path.join(dir, "index.html"),
      `<!doctype html><meta charset="utf-8"><title>v2</title><script src="sio2.js"></script>
<script>
window.run = (transports, extra) => new Promise((resolve, reject) => {
  const s = io(location.origin, { transports, forceNew: true, reconnection: false, ...extra });
  const out = { transports: [] };
  s.on("error", (e) => reject(new Error("error " + JSON.stringify(e))));
  s.on("connect_error", (e) => reject(new Error("connect_error " + e)));
  s.on("connect", () => {
    out.id = s.id;
    out.engineId = s.io.engine.id;
    s.emit("message", "é😀", new Uint8Array([1, 2, 250]).buffer, { deep: [new Uint8Array([7, 8])] });
  });
  s.on("message-back", (text, buf, obj) => {
    out.text = text;
    out.bytes = Array.from(new Uint8Array(buf));
    out.deep = Array.from(new Uint8Array(obj.deep[0]));
    const done = () => {
      out.transports.push(s.io.engine.transport.name);
      s.emit("message-with-ack", new Uint8Array([9]).buffer, (b) => {
        out.acked = Array.from(new Uint8Array(b));
        s.close();
        resolve(out);
      });
    };
    if (transports.length > 1 && s.io.engine.transport.name !== "websocket") s.io.engine.once("upgrade", done);
    else done();
  });
});
</script>`,
    );
    const url = await serve(["--allow-eio3", "--static", dir, "--shards", "2"]);
    const p = await page(`${url}/`);
    const binaryPolls = [];
    p.on("response", (r) => {
      if (r.url().includes("/socket.io/") && r.headers()["content-type"] === "application/octet-stream") binaryPolls.push(r.url());
    });
    const want = { text: "é😀", bytes: [1, 2, 250], deep: [7, 8], acked: [9] };
    const jsonpPolls = [];
    p.on("request", (r) => /[?&]j=\d/.test(r.url()) && jsonpPolls.push(r.url()));
    for (const [transports, extra] of [[["polling"]], [["polling", "websocket"]], [["websocket"]], [["polling"], { forceJSONP: true }]]) {
      const got = await p.evaluate((t, e) => window.run(t, e ?? {}), transports, extra);
      assert.equal(got.id, got.engineId, `${transports}: the socket id is the engine's`);
      assert.deepStrictEqual(
        { text: got.text, bytes: got.bytes, deep: got.deep, acked: got.acked },
        want,
        `${transports}: ${JSON.stringify(got)}`,
      );
      assert.deepStrictEqual(got.transports, [transports.length > 1 ? "websocket" : transports[0]]);
      if (transports.length === 1 && transports[0] === "polling" && !extra) {
        assert.ok(binaryPolls.length > 0, "no polling response came in the binary payload form");
      }
      if (extra?.forceJSONP) assert.ok(jsonpPolls.length > 2, `JSONP requests: ${jsonpPolls.length}`);
    }
    await p.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

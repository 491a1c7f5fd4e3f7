// Long-polling response compression (engine.io's `httpCompression`, on by default with a
// 1 KiB threshold): raw HTTP requests with and without Accept-Encoding, gzip and deflate,
// below and above the threshold; then the official client over the Fetch transport (whose
// requests, as a browser's, accept gzip) with a large payload.

import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import zlib from "node:zlib";
import { Fetch } from "engine.io-client";
import { startServer, connectClient, echo } from "./harness.mjs";

const T = { timeout: 20000 };

function request(url, { method = "GET", body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, raw: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${url}: no answer in 5 s`)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function decode(res) {
  switch (res.headers["content-encoding"]) {
    case undefined:
      return res.raw.toString("utf8");
    case "gzip":
      return zlib.gunzipSync(res.raw).toString("utf8");
    case "deflate":
      return zlib.inflateSync(res.raw).toString("utf8");
    default:
      throw new Error(`unexpected content-encoding ${res.headers["content-encoding"]}`);
  }
}

/** A polling session connected to `/`, its CONNECT reply and auth event read. */
async function session(base) {
  const open = await request(`${base}/socket.io/?EIO=4&transport=polling`);
  assert.equal(open.status, 200);
  const { sid } = JSON.parse(decode(open).slice(1));
  const url = `${base}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal((await request(url, { method: "POST", body: "40" })).status, 200);
  const first = decode(await request(url));
  assert.match(first, /^40\{"sid":/);
  return url;
}

/** Has the server echo `text` and returns the raw answer of the next GET. */
async function echoed(url, text, headers) {
  const post = await request(url, { method: "POST", body: `42${JSON.stringify(["message", text])}` });
  assert.equal(post.status, 200);
  return await request(url, { headers });
}

describe("polling compression", { concurrency: true }, () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  const big = "compressible ".repeat(200); // 2,600 characters

  for (const coding of ["gzip", "deflate"]) {
    test(`a large response is ${coding}-encoded when the client accepts it`, T, async () => {
      const url = await session(server.url);
      const res = await echoed(url, big, { "Accept-Encoding": coding });
      assert.equal(res.status, 200);
      assert.equal(res.headers["content-encoding"], coding);
      assert.ok(res.raw.length < big.length / 5, `${res.raw.length} bytes on the wire`);
      assert.equal(decode(res), `42${JSON.stringify(["message-back", big])}`);
    });
  }

  test("the client's preference decides between gzip and deflate", T, async () => {
    const url = await session(server.url);
    const res = await echoed(url, big, { "Accept-Encoding": "gzip;q=0.5, deflate;q=0.9" });
    assert.equal(res.headers["content-encoding"], "deflate");
    assert.equal(decode(res), `42${JSON.stringify(["message-back", big])}`);
  });

  test("no Accept-Encoding, or a small response: sent as it is", T, async () => {
    const url = await session(server.url);
    const plain = await echoed(url, big, {});
    assert.equal(plain.headers["content-encoding"], undefined);
    assert.equal(plain.raw.toString(), `42${JSON.stringify(["message-back", big])}`);
    const small = await echoed(url, "short", { "Accept-Encoding": "gzip" });
    assert.equal(small.headers["content-encoding"], undefined);
    assert.equal(small.raw.toString(), `42["message-back","short"]`);
    const br = await echoed(url, big, { "Accept-Encoding": "br" });
    assert.equal(br.headers["content-encoding"], undefined);
  });

  test("the official client over the Fetch transport, large payloads", T, async (t) => {
    const { socket } = await connectClient(server.url, "polling", { t, transports: [Fetch] });
    const payload = { text: big, list: Array.from({ length: 300 }, (_, i) => ({ i, s: `item ${i}` })) };
    assert.deepStrictEqual(await echo(socket, 8000, payload, "end"), [payload, "end"]);
  });
});

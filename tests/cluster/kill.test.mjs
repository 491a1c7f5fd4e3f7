// kill -9 of one server of a cluster under load (three shardcast servers on one Redis, the
// classic adapter and the Streams adapter with recovery on). Its clients reach it through a
// TCP proxy, as through a load balancer. A publisher on a survivor publishes a numbered
// stream to a room that has members on every server, and keeps going the whole time.
//
// The victim is first frozen (SIGSTOP: still subscribed, never answering), so that
// cross-server requests from a survivor are pending on it, and then killed (SIGKILL) while
// they are. The balancer sends new connections to a survivor. Checked:
// - the survivors' members get every acknowledged message once and in order, with no pause;
// - the pending requests end with a timeout error (server-side emit with ack, broadcast
//   with ack) or are dropped from the table (fetchSockets) once the request timeout passes,
//   instead of hanging; a new request right after the kill is answered at once, without the
//   dead server;
// - the victim's clients reconnect to a survivor and get the stream again; with live
//   sessions (`--recovery-live-sessions`) they are recovered there, with their rooms and
//   every message they missed, once and in order;
// - once every client left, nothing is left in the survivors' tables.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { T, ack, client, freePort, proxy, server, sleep, tables, until } from "./lib.mjs";

const PER_SURVIVOR = 10;
const ON_VICTIM = 20;

const STREAMS = ["--redis-streams", "--recovery", "60000"];
for (const args of [[], STREAMS, [...STREAMS, "--recovery-live-sessions"]]) {
  const live = args.includes("--recovery-live-sessions");
  const name = live ? "Streams adapter, live sessions" : args.length ? "Streams adapter, recovery on" : "classic adapter";
  describe(`kill -9 of a server under load (${name})`, { concurrency: false }, () => {
    test("the others keep serving, pending requests time out, its clients move, nothing leaks", { timeout: 60000 }, async () => {
      const key = `sc-kill-${process.pid}-${args.length}`;
      // Live sessions are written within a second of a change.
      const settle = live ? 1500 : 0;
      const start = async () => {
        const metrics = await freePort();
        const s = await server("shardcast", key, { args: [...args, "--metrics", `127.0.0.1:${metrics}`] });
        return { ...s, metrics };
      };
      const [a, b, victim] = [await start(), await start(), await start()];
      const lb = await proxy(victim.port);

      // Members: 10 on each survivor directly, 20 on the victim through the balancer. Each
      // answers the `probe` broadcast's ack and records the stream.
      const members = [];
      const join = async (s, via) => {
        const m = { s, via, got: [], at: [] };
        s.on("tick", (n) => {
          m.got.push(n);
          m.at.push(Date.now());
        });
        s.on("probe", (cb) => cb("ok"));
        assert.equal(await ack(s, "join", "load"), true);
        members.push(m);
        return m;
      };
      for (const srv of [a, b]) for (let i = 0; i < PER_SURVIVOR; i++) await join(await client(srv.url), srv);
      const moved = [];
      for (let i = 0; i < ON_VICTIM; i++) {
        const s = io(lb.url, { transports: ["websocket"], forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 500 });
        await new Promise((resolve, reject) => (s.once("connect", resolve), s.once("connect_error", reject)));
        const m = await join(s, victim);
        // Back on another server: rejoin unless the socket was recovered with its rooms.
        m.reconnected = 0;
        s.on("connect", () => {
          m.reconnected++;
          m.backAt = Date.now();
          if (!s.recovered) s.emit("join", "load");
        });
        moved.push(m);
      }

      // The stream, from a survivor: one message every 10 ms, each acknowledged.
      const publisher = await client(a.url);
      const acked = [];
      let publishing = true;
      const stream = (async () => {
        for (let n = 0; publishing; n++) {
          if ((await ack(publisher, "publish", "load", "tick", n)) === true) acked.push(n);
          await sleep(10);
        }
      })();
      await until(() => members.every((m) => m.got.length > 5), "the stream everywhere", 10000);
      await sleep(settle);

      // Freeze the victim, then ask the cluster things it will never answer.
      victim.proc.kill("SIGSTOP");
      const stoppedAt = Date.now();
      const asker = await client(a.url);
      const t0 = Date.now();
      const sse = ack(asker, "server-side-emit-with-ack", "probe").then((r) => ({ r, ms: Date.now() - t0 }));
      const bwa = ack(asker, "publish-with-ack", "load", "probe").then((r) => ({ r, ms: Date.now() - t0 }));
      asker.emit("fetch-sockets", "load", () => {});
      await until(async () => (await tables(a.metrics)).adapter_requests >= 2, "requests pending on a");

      // Killed while they are pending; the balancer sends new connections to a survivor.
      await sleep(500);
      lb.to(a.port);
      const died = new Promise((r) => victim.proc.once("exit", r));
      const killedAt = Date.now();
      victim.proc.kill("SIGKILL");
      await died;

      // A new request is answered at once, by the live servers alone.
      const t1 = Date.now();
      const serverSide = await ack(asker, "server-side-emit-with-ack", "after");
      assert.equal(serverSide.error, null, JSON.stringify(serverSide));
      assert.equal(serverSide.responses.length, 1);
      assert.ok(Date.now() - t1 < 2000, `a request after the kill took ${Date.now() - t1} ms`);

      // The pending ones end with a timeout error, after the request timeouts (5 s and 2 s).
      const { r: s1, ms: ms1 } = await sse;
      assert.match(String(s1.error), /time/i, JSON.stringify(s1));
      assert.equal(s1.responses.length, 1, "b answered");
      assert.ok(ms1 >= 4500 && ms1 < 9000, `server-side emit ended after ${ms1} ms`);
      const { r: s2, ms: ms2 } = await bwa;
      assert.match(String(s2.error), /time/i, JSON.stringify(s2));
      assert.ok(s2.responses.length >= 2 * PER_SURVIVOR, `${s2.responses.length} responses`);
      assert.ok(ms2 >= 1500 && ms2 < 9000, `broadcast with ack ended after ${ms2} ms`);
      await until(async () => (await tables(a.metrics)).adapter_requests === 0, "a's request table empty", 8000);

      // The victim's clients are back, on a, and get the stream again.
      await until(() => moved.every((m) => m.s.connected && m.reconnected > 0), "the victim's clients back", 15000);
      const backMs = Math.max(...moved.map((m) => m.backAt)) - killedAt;
      const mark = moved.map((m) => m.got.length);
      await until(() => moved.every((m, i) => m.got.length > mark[i] + 5), "the stream on the moved clients", 10000);
      const ids = await ack(asker, "fetch-sockets", "load");
      assert.equal(ids.length, members.length, "every member, on the live servers");

      publishing = false;
      await stream;
      await sleep(300);
      // The survivors' own members: every acknowledged message, once, in order, no pause.
      let pause = 0;
      for (const m of members.filter((m) => m.via !== victim)) {
        const got = m.got.filter((n) => n <= acked[acked.length - 1]);
        assert.deepEqual(got, acked, "every acknowledged message, once and in order");
        const gaps = m.at.slice(1).map((t, i) => t - m.at[i]);
        const worst = Math.max(...gaps);
        const at = m.at[gaps.indexOf(worst)];
        assert.ok(worst < 1000, `a pause of ${worst} ms on a survivor, ${at - killedAt} ms after the kill (stop at ${stoppedAt - killedAt})`);
        pause = Math.max(pause, worst);
      }
      const recovered = moved.filter((m) => m.s.recovered).length;
      if (live) {
        // Recovered on a survivor: the same socket, its rooms, and every message it missed
        // while its server was frozen and then dead, once and in order.
        assert.equal(recovered, ON_VICTIM, "every client of the dead server recovered");
        for (const m of moved) {
          const got = m.got.filter((n) => n <= acked[acked.length - 1]);
          assert.deepEqual(got, acked, "every acknowledged message, once and in order, on a moved client");
        }
      }
      console.log(
        `kill -9 (${name}): ${acked.length} messages, longest gap on a survivor ${pause} ms; ` +
          `pending server-side emit ended after ${ms1} ms, broadcast with ack after ${ms2} ms; ` +
          `the victim's ${ON_VICTIM} clients back within ${backMs} ms (${recovered} recovered)`,
      );

      // Everyone leaves: the survivors' tables are empty.
      for (const m of members) m.s.close();
      publisher.close();
      asker.close();
      for (const srv of [a, b]) {
        await until(async () => {
          const t = await tables(srv.metrics);
          return ["transport_sessions", "sockets", "room_members", "socket_acks", "adapter_requests"].every((k) => t[k] === 0);
        }, `server ${srv.port}'s tables empty`, 10000);
      }
    });
  });
}

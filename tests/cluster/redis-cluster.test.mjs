// The sharded protocol on a Redis Cluster: three masters started here on loopback ports
// (`redis-cli --cluster create`), the servers given one node's URL (shardcast detects the
// cluster; the Node peer uses node-redis's createCluster). Broadcasts and the operations
// suite, as on a single Redis: each channel lives on the node of its slot.

import { after, before } from "node:test";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, sleep } from "./lib.mjs";
import { defineOperations } from "./ops-suite.mjs";
import { defineShardedBroadcasts } from "./sharded-suite.mjs";

let url;
const nodes = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sc-redis-cluster-"));

async function clusterPort() {
  // the cluster bus listens on port + 10000
  for (;;) {
    const p = await freePort();
    if (p < 55000) return p;
  }
}

before(async () => {
  const ports = [await clusterPort(), await clusterPort(), await clusterPort()];
  for (const port of ports) {
    const proc = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`,
        "--dir", dir, "--save", "", "--appendonly", "no"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    nodes.push(proc);
    await new Promise((resolve, reject) => {
      proc.stdout.on("data", (d) => /Ready to accept connections/.test(String(d)) && resolve());
      proc.on("exit", (code) => reject(new Error(`redis-server exited ${code}`)));
    });
  }
  execFileSync("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"], {
    stdio: "ignore",
  });
  for (let i = 0; ; i++) {
    const info = ports.map((p) => execFileSync("redis-cli", ["-p", String(p), "cluster", "info"]).toString());
    if (info.every((t) => /cluster_state:ok/.test(t))) break;
    if (i > 100) throw new Error("the Redis Cluster did not come up");
    await sleep(100);
  }
  url = `redis://127.0.0.1:${ports[0]}`;
}, { timeout: 30000 });

after(() => {
  for (const n of nodes) n.kill("SIGKILL");
  fs.rmSync(dir, { recursive: true, force: true });
});

defineShardedBroadcasts("sharded broadcasts on a Redis Cluster", () => url);
defineOperations("cluster operations on a Redis Cluster", {
  args: ["--redis-sharded"],
  redis: () => url,
  allRoomsAcross: false,
  slowStop: false,
});

#!/usr/bin/env node
// Reference peer: the shardcast demo app (docs/demo-app.md)
// implemented with the official `socket.io` server package.
//
//   node server.js [serve] [--host 127.0.0.1] [--port 3000] [--shards N]
//                  [--ping-interval MS] [--ping-timeout MS] [--max-payload BYTES]
//                  [--redis URL] [--redis-key PREFIX] [--redis-sharded [--redis-subscription-mode MODE]] [--redis-streams] [--recovery MS]
//                  [--parser default|msgpack] [--allow-eio3]
//
// With --redis it joins the cluster on that Redis with the official
// @socket.io/redis-adapter (`createAdapter(pub, sub, { key: PREFIX })`, default
// prefix `socket.io`), and says `listening on` once subscribed. With --redis-sharded
// it uses `createShardedAdapter(pub, sub, { channelPrefix: PREFIX })` instead, on a
// single Redis or, when that Redis is a cluster node, on the Redis Cluster; with
// --redis-streams, @socket.io/redis-streams-adapter (`streamName` and `channelPrefix`
// PREFIX).
// Prints `listening on HOST:PORT` once it accepts connections and exits with
// code 0 on SIGINT / SIGTERM. `--shards` is accepted and ignored (a single
// Node process is one "shard"). --recovery MS turns on connection state recovery
// (`connectionStateRecovery: { maxDisconnectionDuration: MS, skipMiddlewares: true }`).
// --parser msgpack uses socket.io-msgpack-parser (`parser` option).
// --allow-eio3 accepts Engine.IO v3 clients (socket.io-client 2.x), socket.io's `allowEIO3`.

import { createServer } from "node:http";
import { Server } from "socket.io";

const USAGE =
  "usage: server.js [serve] [--host HOST] [--port PORT] [--shards N] " +
  "[--ping-interval MS] [--ping-timeout MS] [--max-payload BYTES] [--redis URL] [--redis-key PREFIX] [--redis-sharded] [--redis-subscription-mode MODE] " +
  "[--redis-streams] [--recovery MS] [--cors ORIGIN]... [--admin-ui [--admin-ui-username NAME --admin-ui-password-hash HASH] " +
  "[--admin-ui-readonly] [--admin-ui-mode development|production] [--admin-ui-server-id ID]] [--parser default|msgpack] [--allow-eio3]";

function parseArgs(argv) {
  const opts = {
    host: "127.0.0.1",
    port: 3000,
    shards: null,
    pingInterval: 25000,
    pingTimeout: 20000,
    maxPayload: 1000000,
    parser: "default",
    redis: null,
    redisKey: "socket.io",
    redisSharded: false,
    redisSubscriptionMode: null,
    redisStreams: false,
    recovery: null,
    cors: [],
    adminUi: false,
    adminUiUsername: null,
    adminUiPasswordHash: null,
    adminUiReadonly: false,
    adminUiMode: "development",
    adminUiServerId: null,
    allowEIO3: false,
  };
  const text = {
    "--admin-ui-username": "adminUiUsername",
    "--admin-ui-password-hash": "adminUiPasswordHash",
    "--admin-ui-mode": "adminUiMode",
    "--admin-ui-server-id": "adminUiServerId",
    "--host": "host",
    "--parser": "parser",
    "--redis": "redis",
    "--redis-key": "redisKey",
    "--redis-subscription-mode": "redisSubscriptionMode",
  };
  const numeric = {
    "--port": "port",
    "--shards": "shards",
    "--ping-interval": "pingInterval",
    "--ping-timeout": "pingTimeout",
    "--max-payload": "maxPayload",
    "--recovery": "recovery",
  };
  const args = [...argv];
  if (args[0] === "serve") args.shift();
  for (let i = 0; i < args.length; i++) {
    let flag = args[i];
    let value;
    const eq = flag.indexOf("=");
    if (flag.startsWith("--") && eq !== -1) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    }
    if (flag === "-h" || flag === "--help") {
      console.log(USAGE);
      process.exit(0);
    }
    if (flag === "--redis-streams") {
      opts.redisStreams = true;
      continue;
    }
    if (flag === "--admin-ui") {
      opts.adminUi = true;
      continue;
    }
    if (flag === "--admin-ui-readonly") {
      opts.adminUiReadonly = true;
      continue;
    }
    if (flag === "--cors") {
      if (value === undefined) value = args[++i];
      opts.cors.push(value);
      continue;
    }
    if (flag === "--redis-sharded") {
      opts.redisSharded = true;
      continue;
    }
    if (flag === "--allow-eio3") {
      opts.allowEIO3 = true;
      continue;
    }
    if (!(flag in text) && !(flag in numeric)) {
      console.error(`unknown argument: ${args[i]}\n${USAGE}`);
      process.exit(2);
    }
    if (value === undefined) {
      if (i + 1 >= args.length) {
        console.error(`missing value for ${flag}\n${USAGE}`);
        process.exit(2);
      }
      value = args[++i];
    }
    if (flag in text) {
      opts[text[flag]] = value;
    } else {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) {
        console.error(`invalid value for ${flag}: ${value}\n${USAGE}`);
        process.exit(2);
      }
      opts[numeric[flag]] = n;
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
if (opts.parser !== "default" && opts.parser !== "msgpack") {
  console.error(`invalid value for --parser: ${opts.parser}\n${USAGE}`);
  process.exit(2);
}

const httpServer = createServer();
httpServer.on("connection", (s) => s.setNoDelay(true));

const io = new Server(httpServer, {
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  maxHttpBufferSize: opts.maxPayload,
  allowEIO3: opts.allowEIO3,
  ...(opts.parser === "msgpack" ? { parser: (await import("socket.io-msgpack-parser")).default } : {}),
  ...(opts.recovery
    ? { connectionStateRecovery: { maxDisconnectionDuration: opts.recovery, skipMiddlewares: true } }
    : {}),
  ...(opts.cors.length
    ? { cors: { origin: opts.cors.includes("*") ? true : opts.cors, credentials: true } }
    : {}),
  // path "/socket.io/", transports ["polling", "websocket"], upgrades allowed:
  // socket.io defaults.
});

if (opts.redis) {
  const { createClient, createCluster } = await import("redis");
  const { createAdapter, createShardedAdapter } = await import("@socket.io/redis-adapter");
  let pub = createClient({ url: opts.redis });
  if (opts.redisSharded) {
    await pub.connect();
    const info = await pub.info("cluster");
    if (/cluster_enabled:1/.test(info)) {
      await pub.quit();
      pub = createCluster({ rootNodes: [{ url: opts.redis }] });
    } else {
      await pub.quit();
      pub = createClient({ url: opts.redis });
    }
  }
  const sub = pub.duplicate();
  // node-redis reconnects by itself; without a listener an `error` event would end the
  // process (the sharded adapter adds none).
  for (const c of [pub, sub]) c.on("error", (e) => console.error(`redis: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  if (opts.redisStreams) {
    // @socket.io/redis-streams-adapter: the stream and its channels named by PREFIX, as
    // `shardcast serve --redis-streams` names them; it makes its own reader and subscriber
    // from `pub` (and `sub` is not used).
    const { createAdapter: createStreamsAdapter } = await import("@socket.io/redis-streams-adapter");
    io.adapter(createStreamsAdapter(pub, { streamName: opts.redisKey, channelPrefix: opts.redisKey }));
  } else {
    io.adapter(
      opts.redisSharded
        ? createShardedAdapter(pub, sub, {
            channelPrefix: opts.redisKey,
            ...(opts.redisSubscriptionMode ? { subscriptionMode: opts.redisSubscriptionMode } : {}),
          })
        : createAdapter(pub, sub, { key: opts.redisKey }),
    );
  }
  // The adapter of each namespace subscribes as the namespace is created, without a
  // promise to wait on: give those subscriptions a moment before saying `listening on`.
  io.of("/custom");
  await new Promise((r) => setTimeout(r, 300));
}

// Splits a trailing acknowledgement callback off the event arguments.
function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

// A server-side event from another server of the cluster (any name): `server-side`
// (event, ...args) to this server's sockets on "/", and, when the sender awaits a reply,
// `{ sockets: n }`. socket.io has no catch-all for server-side events; the namespace
// method that dispatches them is wrapped instead.
{
  const root = io.of("/");
  root._onServerSideEmit = (args) => {
    const [data, ack] = splitAck(args);
    io.local.emit("server-side", ...data);
    if (ack) ack({ sockets: root.sockets.size });
  };
}

// Namespace "/"
io.on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);

  socket.on("message", (...raw) => {
    // `message` is never acknowledged, even if the client asked for an ack.
    const [args] = splitAck(raw);
    socket.emit("message-back", ...args);
  });

  socket.on("message-with-ack", (...raw) => {
    const [args, ack] = splitAck(raw);
    if (ack) ack(...args);
  });

  socket.on("join", (...raw) => {
    const [[room], ack] = splitAck(raw);
    socket.join(room);
    if (ack) ack(true);
  });

  socket.on("leave", (...raw) => {
    const [[room], ack] = splitAck(raw);
    socket.leave(room);
    if (ack) ack(true);
  });

  socket.on("publish", (...raw) => {
    const [[room, event, ...args], ack] = splitAck(raw);
    io.to(room).emit(event, ...args);
    if (ack) ack(true);
  });

  socket.on("disconnect-me", () => {
    // Closes the underlying connection (every namespace multiplexed on it
    // receives a DISCONNECT packet first).
    socket.disconnect(true);
  });

  // docs/demo-app.md, "More events on /".
  socket.on("publish-volatile", (...raw) => {
    const [[room, event, ...args], ack] = splitAck(raw);
    io.to(room).volatile.emit(event, ...args);
    if (ack) ack(true);
  });

  socket.on("publish-with-ack", (...raw) => {
    const [[room, event, ...args], ack] = splitAck(raw);
    io.to(room)
      .timeout(2000)
      .emit(event, ...args, (err, responses) => {
        if (ack) ack({ error: err ? err.message : null, responses });
      });
  });

  socket.on("whoami", (...raw) => {
    const [, ack] = splitAck(raw);
    const rooms = [...socket.rooms].filter((r) => r !== socket.id).sort();
    if (ack) ack({ id: socket.id, rooms, recovered: Boolean(socket.recovered) });
  });

  socket.on("fetch-sockets", async (...raw) => {
    const [[room], ack] = splitAck(raw);
    const sockets = await io.in(room).fetchSockets();
    if (ack) ack(sockets.map((s) => s.id).sort());
  });

  socket.on("sockets-join", (...raw) => {
    const [[room, other], ack] = splitAck(raw);
    io.in(room).socketsJoin(other);
    if (ack) ack(true);
  });

  socket.on("sockets-leave", (...raw) => {
    const [[room, other], ack] = splitAck(raw);
    io.in(room).socketsLeave(other);
    if (ack) ack(true);
  });

  socket.on("disconnect-room", (...raw) => {
    const [[room], ack] = splitAck(raw);
    if (ack) ack(true);
    io.in(room).disconnectSockets(true);
  });

  socket.on("server-side-emit", async (...raw) => {
    const [[event, ...args], ack] = splitAck(raw);
    // The in-memory adapter has no other server (and only warns when asked to reach one).
    if ((await io.of("/").adapter.serverCount()) > 1) io.serverSideEmit(event, ...args);
    if (ack) ack(true);
  });

  socket.on("server-side-emit-with-ack", async (...raw) => {
    const [[event], ack] = splitAck(raw);
    if (!ack) return;
    if ((await io.of("/").adapter.serverCount()) <= 1) {
      ack({ error: null, responses: [] });
      return;
    }
    // The wait is the adapter's requestsTimeout (5 s by default).
    io.serverSideEmit(event, (err, responses) => {
      ack({ error: err ? err.message : null, responses: responses ?? [] });
    });
  });

  socket.on("all-rooms", async (...raw) => {
    const [, ack] = splitAck(raw);
    // A cluster adapter answers allRooms() for every server; the in-memory one has no such
    // method, and its rooms map is this server's (socket ids included).
    const adapter = io.of("/").adapter;
    const rooms = typeof adapter.allRooms === "function" ? await adapter.allRooms() : adapter.rooms.keys();
    if (ack) ack([...rooms].sort());
  });
});

// Namespace "/custom"
io.of("/custom").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
  socket.on("message", (...raw) => {
    const [args] = splitAck(raw);
    socket.emit("message-back", ...args);
  });
});

// Any other namespace: socket.io refuses it with CONNECT_ERROR
// {"message":"Invalid namespace"} by default.

httpServer.on("error", (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});

// --admin-ui: the official @socket.io/admin-ui, as `shardcast serve --admin-ui` does.
if (opts.adminUi) {
  const { instrument } = await import("@socket.io/admin-ui");
  const auth = opts.adminUiUsername
    ? { type: "basic", username: opts.adminUiUsername, password: opts.adminUiPasswordHash }
    : false;
  instrument(io, {
    auth,
    readonly: opts.adminUiReadonly,
    mode: opts.adminUiMode,
    ...(opts.adminUiServerId ? { serverId: opts.adminUiServerId } : {}),
  });
}

httpServer.listen(opts.port, opts.host, () => {
  const addr = httpServer.address();
  const host = addr.family === "IPv6" || addr.family === 6 ? `[${addr.address}]` : addr.address;
  console.log(`listening on ${host}:${addr.port}`);
});

let shuttingDown = false;
function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  // Do not wait forever for lingering HTTP connections.
  setTimeout(() => process.exit(0), 2000).unref();
  io.close(() => process.exit(0));
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

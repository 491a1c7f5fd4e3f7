// The Redis Streams adapter's protocol (@socket.io/redis-streams-adapter 0.3: broadcasts and
// socket operations through the stream, requests over pub/sub) on the shared Redis: the
// broadcasts of sharded-suite.mjs and the operations suite of ops-suite.mjs across a mixed
// cluster of two shardcast servers (--redis-streams) and the official Node server with
// that adapter.

import { defineOperations } from "./ops-suite.mjs";
import { defineShardedBroadcasts } from "./sharded-suite.mjs";

defineShardedBroadcasts("streams broadcasts", undefined, ["--redis-streams"]);
defineOperations("cluster operations (streams)", { args: ["--redis-streams"], allRoomsAcross: false });

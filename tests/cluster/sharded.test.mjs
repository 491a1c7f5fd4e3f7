// The sharded protocol (createShardedAdapter, Redis 7 SPUBLISH / SSUBSCRIBE; dynamic room
// channels, and the static and dynamic-private subscription modes) on the shared Redis: the broadcasts of sharded-suite.mjs and the operations
// suite of ops-suite.mjs across a mixed cluster of two shardcast servers (--redis-sharded)
// and the official Node server.

import { defineOperations } from "./ops-suite.mjs";
import { defineShardedBroadcasts } from "./sharded-suite.mjs";

defineShardedBroadcasts("sharded broadcasts");
// The other two subscription modes, each with every server of the cluster in it.
for (const mode of ["static", "dynamic-private"]) {
  defineShardedBroadcasts(`sharded broadcasts (${mode})`, undefined, ["--redis-sharded", "--redis-subscription-mode", mode]);
}
defineOperations("cluster operations (sharded)", { args: ["--redis-sharded"], allRoomsAcross: false });

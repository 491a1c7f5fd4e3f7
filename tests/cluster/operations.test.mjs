// The classic protocol (createAdapter) under the operations suite of ops-suite.mjs: two
// shardcast servers and the official Node server on one key of the shared Redis.

import { defineOperations } from "./ops-suite.mjs";

defineOperations("cluster operations (classic)");

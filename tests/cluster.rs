//! The cluster suite: `shardcast serve --redis` beside other shardcast servers and the
//! official Node server with `@socket.io/redis-adapter` (loadtest/peers/node) on the Redis
//! at 127.0.0.1:6379 (`REDIS_URL` to use another), driven by the official client
//! (tests/cluster/*.test.mjs, `node --test`). Installs the npm dependencies of both
//! packages when they are missing; fails when Node.js or Redis is missing.

use std::path::Path;
use std::process::Command;

#[path = "common/process.rs"]
mod process;
use process::npm_ci;

#[test]
fn mixed_cluster_of_shardcast_and_node_servers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (suite, peer) = (root.join("tests/cluster"), root.join("loadtest/peers/node"));
    npm_ci(&suite);
    npm_ci(&peer);
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&suite)
        .env("SHARDCAST", env!("CARGO_BIN_EXE_shardcast"))
        .env("NODE_PEER", peer.join("server.js"))
        .output()
        .expect("node is needed for the cluster suite (Node.js 20+)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cluster suite failed:\n{stdout}");
    assert!(stdout.contains("pass"), "cluster suite ran no test:\n{stdout}");
}

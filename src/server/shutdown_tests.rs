//! A stopped server is freed whole, even when its handlers hold it (found by LeakSanitizer,
//! scripts/asan: a handler capturing its namespace kept the server and its mesh alive).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::server::Server;

#[test]
fn a_stopped_server_whose_handlers_hold_it_is_freed() {
    let io = Server::new(Config::builder().shards(2).build().unwrap());
    let ns = io.of("/");
    let held = ns.clone();
    ns.on_connection(move |socket| {
        let ns = held.clone();
        socket.on("x", move |_s, _args, _ack| {
            let _ = ns.emit("y", ());
        });
    });
    io.of("/other").use_middleware({
        let io = io.clone();
        move |_s| {
            let _ = io.of("/").emit("z", ());
            Ok(())
        }
    });
    let weak = Arc::downgrade(&io.0);
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    // Something queued for the shards as they stop (a closure holding the mesh).
    let _ = io.emit("late", ());
    running.shutdown();
    drop((io, ns));
    // The shard threads are joined; the last clones go with them.
    let freed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        weak.upgrade().is_none()
    });
    assert!(freed, "the server is still alive: {} strong references", weak.strong_count());
}

//! The classic broadcast message against the official `@socket.io/redis-adapter` itself,
//! through the Redis on 127.0.0.1:6379: what a Node server publishes decodes to the
//! broadcast it made, and what we encode, published on its channel, reaches a
//! `socket.io-client` connected to that Node server. Needs Node.js and `npm ci` in
//! tests/cluster (done here when missing).

use std::process::Command;

use bytes::Bytes;
use serde_json::{json, Value};

use super::wire::{broadcast_channel, decode_broadcast, encode_broadcast, peek_uid, WireBroadcast};
use crate::broadcast::Selection;
use crate::ns::args::Args;
use crate::ns::Room;

const CAPTURE: &str = r##"
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
const key = process.argv[1];
const pub = createClient({ url: "redis://127.0.0.1:6379" }), sub = pub.duplicate(), raw = pub.duplicate();
await Promise.all([pub.connect(), sub.connect(), raw.connect()]);
const seen = [];
await raw.pSubscribe(key + "#*", (msg, channel) => seen.push({ channel: channel.toString(), hex: msg.toString("hex") }), true);
const io = new Server();
io.adapter(createAdapter(pub, sub, { key }));
await new Promise((r) => setTimeout(r, 100));
io.to("r").emit("ev", 1, "two", Buffer.from([1, 2, 3]), { a: [1.5, null] });
io.except("x").volatile.compress(false).emit("ev2");
io.of("/chat").to(["a", "b"]).emit("ev3", "é😀");
io.local.emit("never");
await new Promise((r) => setTimeout(r, 300));
process.stdout.write(JSON.stringify(seen));
await Promise.all([pub.quit(), sub.quit(), raw.quit()]);
process.exit(0);
"##;

const DELIVER: &str = r##"
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import http from "node:http";
const [key, channel, hex] = process.argv.slice(1);
const pub = createClient({ url: "redis://127.0.0.1:6379" }), sub = pub.duplicate(), raw = pub.duplicate();
await Promise.all([pub.connect(), sub.connect(), raw.connect()]);
const httpServer = http.createServer();
const io = new Server(httpServer);
io.adapter(createAdapter(pub, sub, { key }));
io.on("connection", (s) => s.join("r"));
await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
const client = connect(`http://127.0.0.1:${httpServer.address().port}`, { transports: ["websocket"] });
const got = new Promise((resolve) => client.on("from-rust", (...args) => resolve(args)));
await new Promise((r) => client.on("connect", r));
await new Promise((r) => setTimeout(r, 100));
await raw.publish(channel, Buffer.from(hex, "hex"));
const args = await Promise.race([got, new Promise((r) => setTimeout(() => r("timeout"), 3000))]);
process.stdout.write(JSON.stringify(args, (k, v) => (v && v.type === "Buffer" ? { buffer: v.data } : v)));
client.close(); io.close();
await Promise.all([pub.quit(), sub.quit(), raw.quit()]);
"##;

fn node(script: &str, args: &[&str]) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster");
    if !std::path::Path::new(dir).join("node_modules/@socket.io/redis-adapter").exists() {
        let st =
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir).status();
        assert!(st.is_ok_and(|s| s.success()), "npm ci in tests/cluster failed");
    }
    let out = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("node is needed for this test");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn rooms(list: &[&str]) -> smallvec::SmallVec<[Room; 2]> {
    list.iter().map(|r| Room::from(*r)).collect()
}

#[test]
fn what_the_node_adapter_publishes_decodes_to_its_broadcast() {
    let key = format!("shardcast-test-{}", std::process::id());
    let seen: Value = serde_json::from_str(&node(CAPTURE, &[&key])).unwrap();
    let seen = seen.as_array().unwrap();
    assert_eq!(seen.len(), 3, "a local broadcast is not published: {seen:?}");
    let decoded: Vec<(String, WireBroadcast)> = seen
        .iter()
        .map(|m| {
            let bytes = Bytes::from(unhex(m["hex"].as_str().unwrap()));
            (m["channel"].as_str().unwrap().to_owned(), decode_broadcast(&bytes, 100).unwrap())
        })
        .collect();
    let (ch, b) = &decoded[0];
    assert_eq!(ch, &broadcast_channel(&key, "/", &rooms(&["r"])));
    assert_eq!((b.nsp.as_str(), b.event.as_str()), ("/", "ev"));
    assert_eq!(
        b.args.values(),
        &[
            json!(1),
            json!("two"),
            json!({"_placeholder": true, "num": 0}),
            json!({"a": [1.5, null]})
        ]
    );
    assert_eq!(b.args.binary(), &[Bytes::from_static(b"\x01\x02\x03")]);
    assert_eq!(b.sel, Selection { rooms: rooms(&["r"]), except: rooms(&[]) });
    assert!(!b.volatile && b.compress);
    assert!(!b.uid.is_empty());
    let (ch, b) = &decoded[1];
    assert_eq!(ch, &broadcast_channel(&key, "/", &[]));
    assert_eq!((b.event.as_str(), b.sel.except.as_slice()), ("ev2", &rooms(&["x"])[..]));
    assert!(b.volatile && !b.compress);
    let (ch, b) = &decoded[2];
    assert_eq!(ch, &broadcast_channel(&key, "/chat", &rooms(&["a", "b"])));
    assert_eq!((b.nsp.as_str(), b.args.values()), ("/chat", &[json!("é😀")][..]));
    assert_eq!(b.sel.rooms, rooms(&["a", "b"]));
    // and re-encoding what we decoded decodes to the same broadcast
    for (_, b) in &decoded {
        assert_eq!(&decode_broadcast(&encode_broadcast(b), 100).unwrap(), b);
    }
}

#[test]
fn what_we_publish_reaches_a_client_of_the_node_server() {
    let key = format!("shardcast-test-d{}", std::process::id());
    let args = Args::new().arg(1).arg("x").binary_arg(Bytes::from_static(b"\x09\x08"));
    let b = WireBroadcast {
        uid: "rust-test".into(),
        nsp: "/".into(),
        event: "from-rust".into(),
        args,
        sel: Selection { rooms: rooms(&["r"]), except: rooms(&[]) },
        volatile: false,
        compress: true,
    };
    let hex: String = encode_broadcast(&b).iter().map(|x| format!("{x:02x}")).collect();
    let channel = broadcast_channel(&key, "/", &b.sel.rooms);
    let got: Value = serde_json::from_str(&node(DELIVER, &[&key, &channel, &hex])).unwrap();
    assert_eq!(got, json!([1, "x", {"buffer": [9, 8]}]));
}

/// Found by the redis_classic fuzz target: a broadcast whose ignored fields hold binary too
/// (an `oroms` key with a nested copy of the message). Only the attachments the arguments
/// name are kept, so it re-encodes to itself and clients are not sent stray attachments.
#[test]
fn binary_outside_the_arguments_is_not_carried() {
    let input = Bytes::from_static(
        b"\x93\xa3\x75\x2c\x64\x83\xa4\x74\x79\x70\x65\x02\xa4\x64\x61\x74\
          \x61\x92\xa2\x65\x76\xc4\x02\x01\x02\xa3\x7d\x73\x70\xa1\x2f\x83\
          \xa5\x6f\x72\x6f\x6d\x73\x91\x93\xa3\x75\x2c\x64\x83\xa4\x74\x79\
          \x70\x65\x02\xa4\x64\x61\x74\x61\x92\xa2\x65\x76\xc4\x02\x01\x02\
          \xa3\x7d\x73\x70\xa1\x2f\x83\xa5\x72\x6f\x6f\x6d\x73\x91\xa1\x72\
          \xa6\x65\x78\x63\x00\x34\x74\x90\xa5\x66\x6c\x38\x00\x77\xa1\x72\
          \xa6\x65\x78\x63\x00\x34\x74\x90\xa5\x66\x6c\x38\x00\x77\x80",
    );
    let b = decode_broadcast(&input, 200).expect("decodes");
    assert_eq!(b.args.binary().len(), 1, "only the attachment the arguments name");
    assert_eq!(decode_broadcast(&encode_broadcast(&b), 200), Ok(b));
}

#[test]
fn the_uid_is_read_without_decoding_the_rest() {
    let b = WireBroadcast {
        uid: "a1b2c3".into(),
        nsp: "/".into(),
        event: "e".into(),
        args: Args::default(),
        sel: Selection::default(),
        volatile: false,
        compress: true,
    };
    let bytes = encode_broadcast(&b);
    assert_eq!(peek_uid(&bytes), Some("a1b2c3"));
    // Whatever follows the uid does not matter: truncated after it, it is still read.
    let head = 1 + 1 + "a1b2c3".len();
    assert_eq!(peek_uid(&bytes[..head]), Some("a1b2c3"));
    // Cut inside the uid, not an array, not a string, invalid UTF-8: none.
    assert_eq!(peek_uid(&bytes[..head - 1]), None);
    assert_eq!(peek_uid(&[0xa3, b'a', b'b', b'c']), None);
    assert_eq!(peek_uid(&[0x93, 0x01, 0xa1, b'x']), None);
    assert_eq!(peek_uid(&[0x93, 0xa2, 0xff, 0xfe]), None);
    assert_eq!(peek_uid(&[]), None);
    // Longer uids (str8 and str16) and arrays of 16 or more parts (array16).
    let long = "u".repeat(40);
    let mut m = vec![0xdc, 0x00, 0x03, 0xd9, 40];
    m.extend_from_slice(long.as_bytes());
    assert_eq!(peek_uid(&m), Some(long.as_str()));
    let longer = "v".repeat(300);
    let mut m = vec![0x93, 0xda, 0x01, 0x2c];
    m.extend_from_slice(longer.as_bytes());
    assert_eq!(peek_uid(&m), Some(longer.as_str()));
    // A length past the end, or at usize's edge, is none rather than a panic.
    assert_eq!(peek_uid(&[0xdd, 0, 0, 0, 3, 0xda, 0xff, 0xff, b'a']), None);
}

//! Differential test against JavaScript itself: Node.js generates random payloads (random
//! doubles from random bit patterns, unsafe integers, odd number spellings, strings with
//! lone surrogates, escapes and emoji, nesting) and prints, for each, the text and
//! `JSON.stringify(JSON.parse(text))`, what the reference server writes back. Our decode then
//! encode of the same packet must give those bytes. Needs Node.js, as the interop suite does.

use std::process::Command;

use bytes::BytesMut;
use shardcast::proto::sio::{Limits, Packet};

/// Prints pairs of lines: a JSON array as sent, and as JavaScript writes it back.
const GENERATOR: &str = r#"
let s = Number(process.argv[1]) >>> 0;
const rnd = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const dv = new DataView(new ArrayBuffer(8));
function double() {
  switch (int(6)) {
    case 0: dv.setUint32(0, int(2 ** 32)); dv.setUint32(4, int(2 ** 32)); return dv.getFloat64(0);
    case 1: return (rnd() - 0.5) * 10 ** (int(40) - 20);
    case 2: return int(2 ** 31) * (int(2 ** 31) + 1) * pick([1, -1, 1024]);
    case 3: return Number((rnd() * 1000).toFixed(int(8)));
    case 4: return pick([0, -0, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e-7, 5e-324, Number.MAX_VALUE, 0.1, 1 / 3]);
    default: return int(1000) - 500;
  }
}
function spelling() {
  const digits = (n) => Array.from({ length: n }, () => int(10)).join("");
  let m = pick(["0", String(1 + int(9)) + digits(int(25))]);
  if (rnd() < 0.5) m += "." + digits(1 + int(20));
  if (rnd() < 0.6) m += pick(["e", "E"]) + pick(["", "+", "-"]) + String(int(rnd() < 0.2 ? 1000000 : 400));
  return (rnd() < 0.3 ? "-" : "") + m;
}
function str() {
  let out = "";
  for (let n = int(8); n > 0; n--) {
    out += pick(["a", "é", "😀", "\ud83d", "\ude00", "\udbff", "\n", "\"", "\\", "/", "\u0001", "\u2028", "x y", "\ud83d\ude00".slice(0, 1)]);
  }
  return out;
}
function value(depth) {
  const k = int(depth > 4 ? 4 : 7);
  if (k === 0) return double();
  if (k === 1) return str();
  if (k === 2) return pick([true, false, null]);
  if (k === 3) return int(2 ** 53);
  if (k === 4) return Array.from({ length: int(4) }, () => value(depth + 1));
  const o = {};
  for (let n = int(4); n > 0; n--) o[pick(["a", "b", "k\ud800", "é", "_placeholder"])] = value(depth + 1);
  return o;
}
const lines = [];
for (let i = 0; i < Number(process.argv[2]); i++) {
  let text;
  if (i % 3 === 0) text = "[\"e\"," + Array.from({ length: 1 + int(4) }, spelling).join(",") + "]";
  else text = JSON.stringify(["e", ...Array.from({ length: 1 + int(4) }, () => value(0))]);
  lines.push(text, JSON.stringify(JSON.parse(text)));
}
process.stdout.write(lines.join("\n") + "\n");
"#;

#[test]
fn decode_then_encode_matches_json_stringify_of_json_parse() {
    let cases = 30_000;
    let out = Command::new("node")
        .args(["-e", GENERATOR, "20261201", &cases.to_string()])
        .output()
        .expect("node is needed for this test (Node.js 20+)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("node prints UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * cases);
    let mut mismatches = Vec::new();
    for pair in lines.chunks(2) {
        let (sent, js) = (pair[0], pair[1]);
        let wire = format!("2{sent}");
        let packet = Packet::decode(wire.as_bytes(), Limits::default())
            .unwrap_or_else(|e| panic!("{sent}: {e}"));
        let mut back = BytesMut::new();
        packet.encode(&mut back);
        let back = String::from_utf8(back.to_vec()).expect("UTF-8");
        if back != format!("2{js}") {
            mismatches.push(format!("sent {sent}\n  js {js}\n  us {}", &back[1..]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cases} differ, first ones:\n{}",
        mismatches.len(),
        mismatches.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

//! Differential test of the MessagePack codec against notepack.io itself (the encoder of
//! `@socket.io/redis-adapter` and `-emitter`, installed by `npm ci` in tests/cluster):
//! Node.js encodes random values (numbers of every width, floats, strings of every length
//! class, nested arrays and maps, Buffers, Dates, `undefined`) and prints the bytes with what
//! `JSON.stringify` makes of the value (binary as Socket.IO placeholders). Our decode must
//! give that value and those attachments, and our encode must give notepack.io's bytes back
//! (for values without Date or `undefined`, which do not survive JSON).

use std::process::Command;

use bytes::{Bytes, BytesMut};
use shardcast::proto::{json, msgpack};

const GENERATOR: &str = r#"
import notepack from "notepack.io";
let s = Number(process.argv[1]) >>> 0;
const rnd = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
let lossy = false;
function value(depth) {
  switch (int(depth > 1 ? 7 : 9)) {
    case 0: return pick([0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1)]);
    case 1: return (rnd() - 0.5) * 10 ** (int(30) - 10);
    case 2: return "x".repeat(rnd() < 0.02 ? 70000 : pick([0, 1, 31, 32, 255, 256])) + pick(["", "é", "😀"]);
    case 3: return pick([true, false, null]);
    case 4: return Buffer.from(Array.from({ length: rnd() < 0.02 ? 70000 : pick([0, 3, 300]) }, () => int(256)));
    case 5: lossy = true; return pick([new Date(0), new Date(1733040000123), new Date(-1), new Date(4102444800000), undefined]);
    case 6: return int(2 ** 31) - 2 ** 30;
    case 7: return Array.from({ length: pick([0, 1, 3, 15, 16, 17]) }, () => value(depth + 1));
    default: {
      const o = {};
      for (let n = pick([0, 2, 15, 16, 20]); n > 0; n--) o["k" + n + pick(["", "é"])] = value(depth + 1);
      return o;
    }
  }
}
const out = [];
for (let i = 0; i < Number(process.argv[2]); i++) {
  lossy = false;
  const v = [value(0), value(0)];
  const bins = [];
  const json = JSON.stringify(v, function (k, x) {
    const raw = this[k];
    if (Buffer.isBuffer(raw)) { bins.push(raw.toString("hex")); return { _placeholder: true, num: bins.length - 1 }; }
    return x;
  });
  out.push(JSON.stringify({ hex: notepack.encode(v).toString("hex"), json, bins, lossy }));
}
process.stdout.write(out.join("\n") + "\n");
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn decode_and_encode_match_notepack() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster");
    if !std::path::Path::new(dir).join("node_modules/notepack.io").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .expect("npm is needed for this test");
        assert!(st.success(), "npm ci in tests/cluster failed");
    }
    let cases = 3000;
    let out = Command::new("node")
        .args(["--input-type=module", "-e", GENERATOR, "20261201", &cases.to_string()])
        .current_dir(dir)
        .output()
        .expect("node is needed for this test");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut checked = (0, 0);
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let bytes = Bytes::from(unhex(case["hex"].as_str().unwrap()));
        let want = json::parse(case["json"].as_str().unwrap(), 1000).unwrap().value;
        let bins: Vec<Vec<u8>> =
            case["bins"].as_array().unwrap().iter().map(|b| unhex(b.as_str().unwrap())).collect();
        let got = msgpack::decode(&bytes, 1000).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(got.value, want, "{line}");
        let got_bins: Vec<Vec<u8>> = got.binary.iter().map(|b| b.to_vec()).collect();
        assert_eq!(got_bins, bins, "{line}");
        checked.0 += 1;
        if !case["lossy"].as_bool().unwrap() {
            let mut back = BytesMut::new();
            msgpack::encode(&mut back, &got.value, &got.binary);
            assert_eq!(&back[..], &bytes[..], "re-encoding differs: {line}");
            checked.1 += 1;
        }
    }
    assert_eq!(checked.0, cases);
    assert!(checked.1 > cases / 4, "too few re-encoded: {checked:?}");
}

//! What the integration tests share: running the real binary, reading its JSON, checking
//! exact counts.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub mod server;

/// A fresh temporary file name.
pub fn tmp(name: &str, ext: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "shardcast-loadtest-{}-{}-{name}.{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs the harness binary with `args`.
pub fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(args)
        .output()
        .expect("run the harness")
}

/// Runs a scenario that must succeed; returns its JSON and its table.
pub fn run(args: &[&str]) -> (Value, String) {
    let json = tmp("result", "json");
    let mut all: Vec<&str> = args.to_vec();
    let path = json.to_str().unwrap().to_owned();
    all.extend(["--json", &path, "--quiet"]);
    let out = harness(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    (v, stdout)
}

/// The number at the dotted `path` of `v`.
pub fn n(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_u64().unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

/// Everything expected arrived once, in order, with no error.
pub fn assert_exact(v: &Value, expected: u64) {
    assert_eq!(n(v, "expected"), expected, "expected");
    assert_eq!(n(v, "received"), expected, "received");
    assert_eq!(n(v, "lost"), 0, "lost");
    assert_eq!(n(v, "duplicates"), 0, "duplicates");
    assert_eq!(n(v, "reordered"), 0, "reordered");
    assert_eq!(v["errors"], serde_json::json!({}), "errors");
}

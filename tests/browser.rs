//! The browser suite: the lobby demo page (examples/lobby-web), the official admin UI
//! (`@socket.io/admin-ui`'s ui/dist) and a page with socket.io-client 2.x's browser bundle
//! (Engine.IO v3 with XHR2 binary payloads), served by `shardcast serve --static DIR`, in headless
//! Chromium (Debian's `chromium`, driven by `puppeteer-core`; tests/browser/*.test.mjs).
//! Installs the npm dependencies of both directories when they are missing; fails when
//! Node.js or Chromium is missing (.ci/run installs Chromium with apt). Screenshots go to
//! target/browser-screenshots (`SCREENSHOTS=docs/screenshots` refreshes the docs' copies).

use std::path::Path;
use std::process::Command;

#[path = "common/process.rs"]
mod process;
use process::npm_ci;

#[test]
fn lobby_page_and_admin_ui_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("tests/browser");
    npm_ci(&root.join("examples/lobby-web"));
    npm_ci(&suite);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is needed for the browser suite: apt-get install chromium (or set CHROMIUM)"
    );
    let shots = std::env::var("SCREENSHOTS")
        .unwrap_or_else(|_| root.join("target/browser-screenshots").display().to_string());
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&suite)
        .env("SHARDCAST", env!("CARGO_BIN_EXE_shardcast"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("node is needed for the browser suite (Node.js 20+)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser suite failed:\n{stdout}");
    assert!(stdout.contains("pass 3"), "browser suite did not run its three tests:\n{stdout}");
}

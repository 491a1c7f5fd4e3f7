//! python-socketio, the Python client (PyPI), against `shardcast serve`: tests/python/
//! test_client.py over websocket and polling (the handshake auth, events, acks, binary,
//! rooms, namespaces, a server-side disconnect). The test makes its virtualenv in the
//! target directory and installs tests/python/requirements.txt into it (every version
//! pinned), again whenever that file changes. It fails without Python 3 and pip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "common/process.rs"]
mod process;

/// The virtualenv with the pinned requirements, made or refreshed when needed.
fn venv() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/python/requirements.txt");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
    let marker = dir.join("requirements.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .expect("python3 is needed for the Python client suite");
    assert!(made.success(), "python3 -m venv failed");
    let pip = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .expect("pip in the virtualenv");
    assert!(pip.success(), "pip install -r tests/python/requirements.txt failed");
    std::fs::write(&marker, wanted).expect("write the marker");
    dir
}

#[test]
fn python_socketio_against_shardcast_serve() {
    let venv = venv();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.args(["serve", "--port", "0", "--shards", "2"]);
    let (mut server, port) = process::start(cmd);
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_client.py"))
        .env("SERVER_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run the Python suite");
    process::signal(&server, "-TERM");
    let exit = process::wait_exit(&mut server, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(out.status.success(), "python-socketio suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 12 tests"), "the suite did not run every test:\n{stderr}");
    assert!(exit.success(), "the server did not exit cleanly: {exit:?}");
}

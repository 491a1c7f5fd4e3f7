//! `--static DIR` (`Config::static_dir`): the files of one directory on the main port beside
//! the Engine.IO path, over real HTTP: index.html at `/`, types, HEAD, `If-Modified-Since`,
//! and nothing outside the directory (`..`, encoded or not, and symbolic links out of it).

mod common;

use common::*;

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

/// A site: index.html, js/app.js, a secret beside the directory, a link to it inside.
fn site(tag: &str) -> (std::path::PathBuf, TestServer) {
    let base = std::env::temp_dir().join(format!("shardcast-static-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("site");
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>lobby</h1>").unwrap();
    std::fs::write(dir.join("js/app.js"), "console.log(1)").unwrap();
    std::fs::write(base.join("secret.txt"), "do not serve").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), dir.join("link.txt")).unwrap();
    let server = TestServer::demo(config().static_dir(&dir).build().unwrap());
    (base, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_served_beside_the_engine_path() {
    let (base, server) = site("files");
    let index = request(server.addr, "GET", "/", &[], b"").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.text(), "<h1>lobby</h1>");
    assert_eq!(index.header("content-type"), Some("text/html"));
    let js = request(server.addr, "GET", "/js/app.js?v=2", &[], b"").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.text(), "console.log(1)");
    assert_eq!(js.header("content-type"), Some("text/javascript"));
    // The Engine.IO path is the server's, as before.
    let hs = request(server.addr, "GET", HANDSHAKE, &[], b"").await;
    assert_eq!(hs.status, 200);
    assert!(hs.text().starts_with("0{\"sid\""), "{hs:?}");

    let head = raw_exchange(
        server.addr,
        b"HEAD /js/app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 14\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    let modified = js.header("last-modified").expect("Last-Modified").to_owned();
    let cached =
        request(server.addr, "GET", "/js/app.js", &[("If-Modified-Since", &modified)], b"").await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_directory_is_served() {
    let (base, server) = site("outside");
    for path in [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/link.txt",
        "/missing.html",
        "/empty/",
        "/bad%zz",
        "/nul%00.html",
    ] {
        let resp = request(server.addr, "GET", path, &[], b"").await;
        assert_eq!(resp.status, 404, "GET {path}: {resp:?}");
        assert!(!resp.text().contains("do not serve"), "GET {path} leaked the secret");
    }
    let post = request(server.addr, "POST", "/index.html", &[], b"x").await;
    assert_eq!(post.status, 404, "only GET and HEAD: {post:?}");
    // The server still serves after all of that.
    assert_eq!(request(server.addr, "GET", "/", &[], b"").await.status, 200);
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_directory_other_paths_are_not_found() {
    let server = TestServer::demo(config().build().unwrap());
    assert_eq!(request(server.addr, "GET", "/", &[], b"").await.status, 404);
    assert_eq!(request(server.addr, "GET", "/index.html", &[], b"").await.status, 404);
}

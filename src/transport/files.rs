//! The HTTP front's file server (`serve --static DIR`): `GET` and `HEAD` of the files under
//! one directory, on the main port beside the Engine.IO path, so a demo page and the
//! real-time endpoint share an origin. A directory answers with its `index.html`.
//!
//! Hand-written rather than `tower-http`'s `ServeDir`: the front is a plain hyper
//! `service_fn` on each shard, not a tower stack, and what a demo page needs (a file, its
//! type, `Last-Modified` / `If-Modified-Since`) is a page of code. Files are read off the
//! shard thread (`spawn_blocking`), so a slow disk never stalls the shard's sockets.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

type Resp = Response<Full<Bytes>>;

/// Files larger than this are refused (a demo page's assets are far smaller; the front
/// answers from memory).
const MAX_FILE: u64 = 64 << 20;

/// Answers `method path` from `root`; `None` when the method is not GET or HEAD.
pub(crate) async fn serve(
    root: &Path,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Resp> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return None,
    };
    let Some(rel) = relative(path) else { return Some(status(StatusCode::NOT_FOUND)) };
    let (root, since) = (root.to_path_buf(), headers.get(header::IF_MODIFIED_SINCE).cloned());
    let found = tokio::task::spawn_blocking(move || read(&root, &rel)).await.ok().flatten();
    let Some(file) = found else { return Some(status(StatusCode::NOT_FOUND)) };
    let modified = file.modified.map(httpdate);
    if let (Some(m), Some(since)) = (&modified, since) {
        if since.to_str().is_ok_and(|s| s == m) {
            return Some(status(StatusCode::NOT_MODIFIED));
        }
    }
    let mime = mime_guess::from_path(&file.path).first_or_octet_stream();
    let len = file.body.len();
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { file.body }));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if head {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(v) = modified.and_then(|m| HeaderValue::from_str(&m).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}

/// The request path as a relative path with no `..`, `.` or root in it (percent-decoded);
/// `None` for one that would leave the directory or is not UTF-8.
fn relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut out = PathBuf::new();
    for c in Path::new(&decoded).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    // A NUL cannot name a file.
    (!s.contains('\0')).then_some(s)
}

struct File {
    path: PathBuf,
    body: Bytes,
    modified: Option<SystemTime>,
}

/// The file at `rel` under `root` (its `index.html` for a directory), when it resolves,
/// symbolic links followed, to a regular file inside `root`.
fn read(root: &Path, rel: &Path) -> Option<File> {
    let root = root.canonicalize().ok()?;
    let mut path = root.join(rel).canonicalize().ok()?;
    if !path.starts_with(&root) {
        return None;
    }
    if path.is_dir() {
        path = path.join("index.html").canonicalize().ok()?;
        if !path.starts_with(&root) {
            return None;
        }
    }
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let body = Bytes::from(std::fs::read(&path).ok()?);
    Some(File { path, body, modified: meta.modified().ok() })
}

fn status(code: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// An HTTP date (`Wed, 02 Dec 2026 04:50:00 GMT`).
fn httpdate(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        assert_eq!(relative("/"), Some(PathBuf::new()));
        assert_eq!(relative("/js/app.js"), Some(PathBuf::from("js/app.js")));
        assert_eq!(relative("/a%20b.html"), Some(PathBuf::from("a b.html")));
        assert_eq!(relative("/../etc/passwd"), None);
        assert_eq!(relative("/%2e%2e/etc/passwd"), None);
        assert_eq!(relative("/a/%2E%2E/%2E%2E/x"), None);
        assert_eq!(relative("/x%00y"), None);
        assert_eq!(relative("/bad%zz"), None);
        assert_eq!(relative("/cut%2"), None);
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784111777);
        assert_eq!(httpdate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}

//! The layers of src/: every top-level module uses only modules of the layers below it (the
//! list in docs/architecture.md, "Layers"). Reads every file of src/ and fails on any
//! `crate::` path that runs up (or sideways across) a layer, and on a top-level module that
//! has no layer. `../shared/tools/modcycles` measures the same thing independently (circles).

use std::path::{Path, PathBuf};

/// Bottom first. A module may use the modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    &["error", "config", "proto"],
    &["mesh"],
    &["shard"],
    &["transport"],
    &["ns"],
    &["broadcast"],
    &["adapter"],
    &["operator"],
    &["metrics"],
    &["server", "emitter"],
    &["admin"],
    &["app"],
    &["bench_support", "fuzz_support"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The code of a file without its comments (doc comments name paths for readers only).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |end| &rest[end..]);
        } else if rest.starts_with('"') {
            // A string literal may hold "//" (URLs) or "crate::" (messages): skip it.
            let mut end = 1;
            let bytes = rest.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            rest = rest.get(end + 1..).unwrap_or("");
            out.push_str("\"\"");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The top-level modules a file names through `crate::` paths (`use crate::a::b`,
/// `crate::{a, b::c}` groups, paths in code).
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `$crate::` or `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut head = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(head.trim().split("::").next().unwrap_or("").to_owned());
                        head.clear();
                        continue;
                    }
                    _ => {}
                }
                head.push(c);
            }
            out.push(head.trim().split("::").next().unwrap_or("").to_owned());
        } else {
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// What `module`'s `code` names that it may not: (named module, why).
fn violations(module: &str, code: &str) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return vec![format!("module `{module}` has no layer: add it to LAYERS and docs")];
    };
    let mut bad = Vec::new();
    for named in named_modules(&strip_comments(code)) {
        if named == module {
            continue;
        }
        match layer_of(&named) {
            Some(l) if l < own => {}
            Some(l) => bad.push(format!(
                "`{module}` (layer {own}) uses `crate::{named}` (layer {l}): up or sideways"
            )),
            // Items of the crate root (re-exports in lib.rs) are the API of the top.
            None => bad.push(format!("`{module}` uses `crate::{named}`, which has no layer")),
        }
    }
    bad
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().into_owned();
        if first == "lib.rs" || first == "main.rs" {
            continue; // the root: re-exports and the CLI
        }
        let module = first.trim_end_matches(".rs");
        let module = if module == "bench_support" { "bench_support" } else { module };
        let code = std::fs::read_to_string(file).expect("read file");
        for v in violations(module, &code) {
            problems.push(format!("{}: {v}", rel.display()));
        }
        seen += 1;
    }
    assert!(seen > 30, "only {seen} files read under {}", src.display());
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_upward_and_unknown_paths() {
    // upward, in a use line, a group, and a path in code; comments and strings do not count
    let code = r#"
        use crate::ns::socket::Socket;
        use crate::{proto::sid::Sid, broadcast};
        fn f() { crate::server::Server::new(); }
        // crate::app is only mentioned here
        const S: &str = "crate::operator";
    "#;
    let v = violations("transport", code);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v[0].contains("crate::ns") && v[1].contains("crate::broadcast"));
    assert!(v[2].contains("crate::server"));
    // downward is fine; sideways within the bottom layer is not
    assert!(violations("server", "use crate::ns::Namespace; use crate::mesh::Mesh;").is_empty());
    assert_eq!(violations("proto", "use crate::config::Config;").len(), 1);
    // a module with no layer, and a path to one
    assert_eq!(violations("newthing", "").len(), 1);
    assert_eq!(violations("server", "use crate::newthing::X;").len(), 1);
}

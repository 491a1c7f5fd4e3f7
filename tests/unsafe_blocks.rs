//! Every `unsafe` block, function and impl in the project's code (src/, loadtest/src/,
//! benches/) carries a `// SAFETY:` comment just above it (within the four lines before),
//! saying why it is sound, so a reader can check it. docs/reliability.md lists them.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `unsafe` as a keyword in the code part of a line (not in a comment or a string).
fn has_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let code: String = code.split('"').step_by(2).collect();
    code.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "unsafe")
}

#[test]
fn every_unsafe_has_a_safety_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in ["src", "loadtest/src", "benches"] {
        rust_files(&root.join(d), &mut files);
    }
    let mut missing = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !has_unsafe(line) || line.trim_start().starts_with("#![") {
                continue;
            }
            seen += 1;
            let from = i.saturating_sub(4);
            if !lines[from..=i].iter().any(|l| l.contains("SAFETY:")) {
                missing.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(seen > 0, "no unsafe found: is the scan looking in the right place?");
    assert!(missing.is_empty(), "unsafe without a // SAFETY: comment:\n{}", missing.join("\n"));
}

#[test]
fn the_scan_sees_unsafe_in_code_only() {
    assert!(has_unsafe("    let r = unsafe { libc::read(fd) };"));
    assert!(!has_unsafe("    // this is not unsafe"));
    assert!(!has_unsafe(r#"    let s = "unsafe";"#));
    assert!(!has_unsafe("    let unsafely = 1;"));
}

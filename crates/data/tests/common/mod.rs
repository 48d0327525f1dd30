// Shared helpers for the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project venv's python (`COVENANT_PYTHON`, set by .cargo/config.toml). Tests that need it
/// fail, never skip, when it is missing.
pub fn python() -> PathBuf {
    let p = std::env::var_os("COVENANT_PYTHON")
        .expect("COVENANT_PYTHON is not set: run scripts/setup.sh (it writes .cargo/config.toml)");
    PathBuf::from(p)
}

/// Runs `python -c script args...` and returns stdout; panics with stderr on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Distinct little documents with a marker word each.
pub fn documents(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "Document number {i} begins here, marker{i}x. The quick brown fox jumps over the lazy dog {i} times; \
                 \"quoted\" words, numbers 3.14 and 2718, and a line break.\nSecond line of document {i}: café naïve — ünïcödé ✓.\n"
            )
        })
        .collect()
}

pub fn write_jsonl(path: &Path, docs: &[String]) {
    let mut s = String::new();
    for d in docs {
        s.push_str(&serde_json::json!({ "id": 1, "text": d }).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).expect("write jsonl");
}

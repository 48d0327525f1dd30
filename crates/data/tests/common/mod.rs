// Shared helpers for the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::Path;

mod python;
pub use python::run_python;

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

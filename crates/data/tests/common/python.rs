//! The venv's Python for tests that compare with reference implementations (shared by the data
//! and core crates' tests: `crates/core/tests/openskill_python.rs` includes this file).

use std::path::PathBuf;
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

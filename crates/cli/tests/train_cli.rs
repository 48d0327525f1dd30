//! End-to-end: the `covenant` binary trains on the bundled corpus, the loss falls, the reports are
//! written, and an interrupted run resumed from its checkpoint ends bit-identical to an
//! uninterrupted one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn covenant() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_covenant"));
    // One prepared copy of the bundled corpus shared by all test runs.
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/covenant");
    c.env("COVENANT_CACHE", cache);
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("spawn covenant");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "covenant failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        c
    );
    stdout
}

fn train_args(out: &Path, extra: &[&str]) -> Command {
    let mut c = covenant();
    c.args([
        "train", "--preset", "tiny", "--steps", "24", "--batch", "4", "--lr", "3e-3",
    ])
    .args([
        "--eval-every",
        "8",
        "--eval-batches",
        "2",
        "--ckpt-every",
        "8",
        "--threads",
        "2",
    ])
    .args(["--device", "cpu", "--out"])
    .arg(out)
    .args(extra);
    c
}

fn final_weights(out: &Path) -> Vec<u8> {
    let dir: PathBuf = out.join("checkpoints/step-00000024");
    std::fs::read(dir.join("model.safetensors"))
        .unwrap_or_else(|e| panic!("reading final checkpoint in {}: {e}", dir.display()))
}

#[test]
fn trains_reports_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let stdout = run_ok(train_args(&a, &[]));
    assert!(
        stdout.contains("validation loss"),
        "summary printed: {stdout}"
    );

    // Reports exist and the loss fell.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("summary.json")).unwrap()).unwrap();
    let first = summary["first_val_loss"].as_f64().unwrap();
    let last = summary["final_val_loss"].as_f64().unwrap();
    assert!(
        first > 8.0,
        "an untrained model over 8192 tokens starts near ln(8192)=9.0, got {first}"
    );
    assert!(
        last < first - 1.0,
        "validation loss must fall clearly: {first} -> {last}"
    );
    let csv = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 1 + 24,
        "header + initial eval + one row per step"
    );
    let png = std::fs::read(a.join("loss.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // Interrupted after 8 steps, then resumed twice (stop after 8 more, then to the end).
    let b = tmp.path().join("b");
    run_ok(train_args(&b, &["--stop-after", "8"]));
    assert!(b.join("checkpoints/step-00000008").is_dir());
    run_ok(train_args(&b, &["--resume", "--stop-after", "8"]));
    run_ok(train_args(&b, &["--resume"]));
    assert!(
        final_weights(&a) == final_weights(&b),
        "resumed run must end bit-identical"
    );
    let csv_b = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    assert_eq!(
        csv_b.lines().count(),
        csv.lines().count(),
        "resumed metrics keep one row per step"
    );

    // Resuming with nothing to resume from is a clear error.
    let mut c = train_args(&tmp.path().join("empty"), &["--resume"]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint"));
}

#[test]
fn bad_arguments_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["train", "--preset", "nope", "--steps", "1"], "nope"),
        (vec!["train", "--preset", "tiny", "--steps", "0"], "--steps"),
        (
            vec!["train", "--preset", "tiny", "--device", "gpu"],
            "--device",
        ),
        (
            vec!["train", "--preset", "tiny", "--data", "/nonexistent/dir"],
            "/nonexistent/dir",
        ),
    ] {
        let out = covenant()
            .args(&args)
            .arg("--out")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: error should name {needle}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

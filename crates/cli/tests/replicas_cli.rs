//! End-to-end: `covenant train --algo ddp,diloco,sparseloco` runs replicas in one process,
//! every algorithm learns, SparseLoCo's uploads go through the wire format and are far smaller
//! than DiLoCo's dense pseudo-gradients, and the comparison reports are written.

use std::path::Path;
use std::process::Command;

#[test]
fn three_algorithms_train_and_compare() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/covenant");
    let res = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .env("COVENANT_CACHE", cache)
        .args([
            "train",
            "--preset",
            "tiny",
            "--algo",
            "ddp,diloco,sparseloco",
            "--replicas",
            "2",
        ])
        .args([
            "--inner-steps",
            "4",
            "--steps",
            "12",
            "--batch",
            "4",
            "--lr",
            "3e-3",
        ])
        .args([
            "--eval-batches",
            "2",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let load = |algo: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(algo).join("result.json")).unwrap()).unwrap()
    };
    let mut bytes = std::collections::HashMap::new();
    for algo in ["ddp", "diloco", "sparseloco"] {
        let r = load(algo);
        let pts = r["points"].as_array().unwrap();
        assert_eq!(pts.len(), 4, "{algo}: initial + 3 outer-step evaluations");
        let first = pts[0]["val_loss"].as_f64().unwrap();
        let last = pts[3]["val_loss"].as_f64().unwrap();
        assert!(last < first - 0.2, "{algo} must learn: {first} -> {last}");
        // Same token budget for all.
        assert_eq!(pts[3]["tokens"].as_u64().unwrap(), 12 * 2 * 4 * 128);
        bytes.insert(algo, pts[3]["bytes_per_replica"].as_u64().unwrap());
        let diag = &pts[3]["sparse"];
        if algo == "sparseloco" {
            let ef = diag["ef_norm"].as_f64().unwrap();
            let clip = diag["mean_clip_factor"].as_f64().unwrap();
            assert!(
                ef > 0.0 && ef.is_finite(),
                "error feedback holds the unsent residual: {ef}"
            );
            assert!(
                clip > 0.0 && clip <= 1.0,
                "clip factors are min(1, M/n): {clip}"
            );
            assert_eq!(diag["skipped_tensors"].as_u64(), Some(0));
        } else {
            assert!(diag.is_null(), "{algo} has no SparseLoCo diagnostics");
        }
    }
    // tiny has 2,491,008 parameters: DiLoCo sends them densely 3 times, DDP 12 times.
    assert_eq!(bytes["diloco"], 3 * 4 * 2_491_008);
    assert_eq!(bytes["ddp"], 12 * 4 * 2_491_008);
    let ratio = bytes["diloco"] as f64 / bytes["sparseloco"] as f64;
    assert!(
        ratio > 100.0,
        "SparseLoCo must send far fewer bytes than DiLoCo: {ratio:.1}×"
    );
    for f in ["compare.csv", "compare.md", "compare.png"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    assert!(stdout.contains("| sparseloco |"), "table printed: {stdout}");

    // The comparison can be rebuilt from saved results without training again.
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    std::fs::remove_file(out.join("compare.md")).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args([
            "train",
            "--preset",
            "tiny",
            "--algo",
            "ddp,diloco,sparseloco",
            "--reuse-results",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(out.join("compare.md")).unwrap(), md);
    std::fs::remove_file(out.join("sparseloco").join("result.json")).unwrap();
    let missing = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args([
            "train",
            "--preset",
            "tiny",
            "--algo",
            "sparseloco",
            "--reuse-results",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("result.json"));
}

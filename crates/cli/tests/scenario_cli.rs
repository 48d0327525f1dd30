//! `covenant scenario` end to end with real processes: 4 honest miners and a copycat, a 100×
//! scaler and a free-rider with a validator on loopback for 20 windows, then the 4 honest miners
//! alone: the adversaries' weight share is below 5% after 10 windows and zero at the end, the
//! copycat is caught by index overlap (its copy is made from the real store, in real time),
//! nobody crashes, and the honest miners' validation loss is within 2% of the all-honest run.
//! The other attack mixes run in the deterministic simulator (`crates/node/tests/sim_network.rs`).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs the scenario and checks what every mix must satisfy; returns the report.
fn scenario(adversaries: &str) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("scn");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/covenant");
    let res = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .env("COVENANT_CACHE", cache)
        .args(["scenario", "--honest", "4", "--adversaries", adversaries])
        .args([
            "--windows",
            "20",
            "--window-secs",
            "7",
            "--grace-secs",
            "2",
            "--inner-steps",
            "6",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "{}",
        &stderr[stderr.len().saturating_sub(6000)..]
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let share10 = r["adversary_share_after_10"].as_f64().unwrap();
    let share_end = r["adversary_share_final"].as_f64().unwrap();
    assert!(
        share10 < 0.05,
        "adversaries' share after 10 windows: {share10}\n{r:#}"
    );
    assert_eq!(share_end, 0.0, "adversaries' share at the end\n{r:#}");
    let rows = r["adversaries"].as_array().unwrap();
    assert_eq!(rows.len(), adversaries.split(',').count());
    for row in rows {
        assert!(
            row.get("error").is_none(),
            "every adversary joined and ran: {row}"
        );
    }
    let ratio = r["val_loss_ratio"].as_f64().unwrap();
    assert!(
        ratio < 1.02,
        "honest loss within 2% of the all-honest run: ratio {ratio}\n{r:#}"
    );
    assert!(out.join("report.md").is_file());
    // No node crashed or stalled: every node of both runs reported `finished`.
    for run in ["attack", "baseline"] {
        for node in std::fs::read_dir(out.join(run).join("nodes"))
            .unwrap()
            .flatten()
        {
            let ev = std::fs::read_to_string(node.path().join("events.jsonl")).unwrap_or_default();
            assert!(
                ev.lines().any(|l| l.contains("\"event\":\"finished\"")),
                "{run}/{} did not finish",
                node.file_name().to_string_lossy()
            );
        }
    }
    r
}

#[test]
fn copycat_scaled_and_free_rider_earn_nothing() {
    let r = scenario("copycat,scaled,free-rider");
    let rows = r["adversaries"].as_array().unwrap();
    let copycat = rows.iter().find(|x| x["behaviour"] == "copycat").unwrap();
    assert_eq!(copycat["copy_detected"], true, "{r:#}");
}

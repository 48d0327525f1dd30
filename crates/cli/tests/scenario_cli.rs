//! `covenant scenario` end to end: 4 honest miners and 3 adversaries (copycat, scaled,
//! free-rider) with a validator on loopback for 20 windows, then the 4 honest miners alone.
//! The adversaries' combined weight share is below 5% after 10 windows and zero at the end, the
//! copycat is caught by index overlap, and the honest miners' validation loss is within 2% of
//! the all-honest run.

use std::path::Path;
use std::process::Command;

#[test]
fn adversaries_earn_nothing_and_do_not_hurt_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("scn");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/covenant");
    let res = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .env("COVENANT_CACHE", cache)
        .args(["scenario", "--honest", "4", "--adversaries", "copycat,scaled,free-rider"])
        .args(["--windows", "20", "--window-secs", "7", "--grace-secs", "2", "--inner-steps", "6"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{}", &stderr[stderr.len().saturating_sub(6000)..]);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let share10 = r["adversary_share_after_10"].as_f64().unwrap();
    let share_end = r["adversary_share_final"].as_f64().unwrap();
    assert!(share10 < 0.05, "adversaries' share after 10 windows: {share10}\n{r:#}");
    assert_eq!(share_end, 0.0, "adversaries' share at the end\n{r:#}");
    let rows = r["adversaries"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let copycat = rows.iter().find(|x| x["behaviour"] == "copycat").unwrap();
    assert_eq!(copycat["copy_detected"], true, "{r:#}");
    let ratio = r["val_loss_ratio"].as_f64().unwrap();
    assert!(ratio < 1.02, "honest loss within 2% of the all-honest run: ratio {ratio}\n{r:#}");
    assert!(out.join("report.md").is_file());
}

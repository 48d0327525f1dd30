//! End-to-end networks of real `covenant miner` / `covenant validator` processes on loopback
//! (embedded chain, directory stores, the `tiny` preset):
//! * 3 miners + 1 validator train (validation loss falls), honest miners earn positive weight,
//!   every node holds bit-identical parameters after every outer step; a miner joining at
//!   window 5 is in sync within 2 windows; a miner killed at window 7 stops being aggregated and
//!   the run continues; the validator killed with SIGKILL and restarted keeps its ratings.
//! * Windows with zero uploads, only invalid uploads, and one valid upload are survived.

use std::time::Duration;

mod common;
use common::*;

const WINDOW_SECS: u64 = 7;

#[test]
fn miners_and_a_validator_train_join_leave_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("net");
    let mut net = Net::init(&run, 12);
    let last = 13;
    net.start("validator", "validator-1", last, &[]);
    for i in 1..=3 {
        net.start("miner", &format!("miner-{i}"), last, &[]);
    }
    // A fourth miner joins during window 5 (it starts following at window 6).
    net.wait_until_window(5, 500);
    net.start("miner", "miner-4", last, &[]);
    // miner-3 leaves abruptly during window 7.
    net.wait_until_window(7, 1000);
    net.kill("miner-3");
    // The validator is killed during window 9 and restarted.
    net.wait_until_window(9, 3500);
    net.kill("validator-1");
    net.start("validator", "validator-1", last, &[]);
    net.wait_all(Duration::from_secs(WINDOW_SECS * 8 + 120));

    let v = net.events("validator-1");
    let logs = net.all_logs();
    // Validation loss falls over the windows.
    let val: Vec<(u64, f64)> = of(&v, "outer_step")
        .iter()
        .map(|e| {
            (
                e["window"].as_u64().unwrap(),
                e["val_loss"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(
        val.len() >= 10,
        "validator stepped in most windows: {val:?}\n{logs}"
    );
    let (first, final_) = (val[0].1, val[val.len() - 1].1);
    assert!(final_ < first - 0.3, "validation loss must fall: {val:?}");

    // Replicas agree: every node that stepped a window holds the validator's parameters.
    let vh = hashes(&v);
    let mut compared = 0;
    for m in ["miner-1", "miner-2", "miner-3", "miner-4"] {
        for (w, h) in hashes(&net.events(m)) {
            if let Some(vh) = vh.get(&w) {
                assert_eq!(&h, vh, "{m} differs from the validator after window {w}");
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 25,
        "enough (node, window) pairs compared: {compared}"
    );

    // miner-4 joined from the validators' checkpoint/records and was in sync within 2 windows.
    let m4 = net.events("miner-4");
    let joined = &of(&m4, "joined")[0];
    let jw = joined["window"].as_u64().unwrap();
    assert!((5..=7).contains(&jw), "miner-4 follows from window {jw}");
    assert!(
        joined["from_checkpoint"].as_u64().is_some(),
        "joined from a checkpoint: {joined}"
    );
    let uid4 = uid_of(&m4);
    let reports = of(&v, "report");
    let sync_of = |uid: u64, w: u64| -> Option<f64> {
        reports
            .iter()
            .find(|r| r["window"] == w)
            .and_then(|r| r["peers"][uid.to_string()]["verdict"]["Evaluated"]["sync"].as_f64())
    };
    let syncs: Vec<f64> = (jw..=jw + 2).filter_map(|w| sync_of(uid4, w)).collect();
    assert!(
        !syncs.is_empty(),
        "miner-4 evaluated within 2 windows of joining\n{logs}"
    );
    assert!(
        syncs.iter().all(|&s| s >= 0.9),
        "miner-4 in sync: {syncs:?}"
    );

    // miner-3 is not aggregated after it was killed, and the run went on.
    let uid3 = uid_of(&net.events("miner-3"));
    for e in of(&v, "outer_step") {
        let w = e["window"].as_u64().unwrap();
        let peers: Vec<u64> = e["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        if w >= 8 {
            assert!(
                !peers.contains(&uid3),
                "killed miner aggregated in window {w}"
            );
        }
    }
    assert!(vh.contains_key(&(last)), "the run reached window {last}");

    // The restarted validator restored its ratings: the restored state equals the report of
    // the window it was saved after.
    let restored = of(&v, "restored");
    assert_eq!(restored.len(), 1, "{logs}");
    let rw = restored[0]["last_window"]
        .as_u64()
        .expect("state had finished windows");
    let before = reports
        .iter()
        .find(|r| r["window"] == rw)
        .expect("report of the saved window");
    let scores = restored[0]["scores"].as_object().unwrap();
    assert!(!scores.is_empty());
    for (uid, s) in scores {
        let reported = before["peers"][uid]["score"].as_f64().unwrap();
        assert!(
            (s.as_f64().unwrap() - reported).abs() < 1e-12,
            "uid {uid}: {s} vs {reported}"
        );
    }
    assert!(
        scores.values().any(|s| s.as_f64().unwrap() > 0.0),
        "ratings were not reset: {scores:?}"
    );

    // Every honest miner that stayed ends with positive weight.
    let w = consensus_weights(&run);
    for m in ["miner-1", "miner-2"] {
        let uid = uid_of(&net.events(m));
        assert!(
            w.get(&uid).copied().unwrap_or(0.0) > 0.0,
            "{m} (uid {uid}) has weight: {w:?}"
        );
    }
}

#[test]
fn zero_invalid_and_single_upload_windows_are_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("net");
    let mut net = Net::init(&run, 10);
    let last = 9;
    net.start("validator", "validator-1", last, &[]);
    // Nobody uploads for windows 0 and 1; a malformed uploader follows from window 2.
    net.wait_until_window(1, 300);
    net.start("miner", "bad", last, &["--behaviour", "malformed"]);
    // An honest miner follows from window 5 or 6.
    net.wait_until_window(4, 2000);
    net.start("miner", "good", last, &[]);
    net.wait_all(Duration::from_secs(WINDOW_SECS * 8 + 120));

    let v = net.events("validator-1");
    let logs = net.all_logs();
    assert!(
        of(&v, "error").is_empty(),
        "validator errors: {:?}",
        of(&v, "error")
    );
    let steps = of(&v, "outer_step");
    let windows: Vec<u64> = steps
        .iter()
        .map(|e| e["window"].as_u64().unwrap())
        .collect();
    assert_eq!(
        windows,
        (0..=last).collect::<Vec<_>>(),
        "a step every window\n{logs}"
    );
    let bad = uid_of(&net.events("bad"));
    let good = uid_of(&net.events("good"));
    let peers = |w: u64| -> Vec<u64> {
        steps[w as usize]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect()
    };
    assert!(
        peers(0).is_empty() && peers(1).is_empty(),
        "zero-upload windows aggregate nobody"
    );
    for w in 2..=4 {
        assert!(
            peers(w).is_empty(),
            "window {w}: the only uploads are invalid"
        );
    }
    // The malformed uploads are reported as invalid.
    let reports = of(&v, "report");
    let invalid = reports
        .iter()
        .filter(|r| r["peers"][bad.to_string()]["verdict"] == "Invalid")
        .count();
    assert!(
        invalid >= 3,
        "malformed uploads judged invalid: {reports:?}"
    );
    // The honest miner joins at window j (a null window: its zero update earns nothing), its
    // first real update (j + 1) gives it weight while j + 2 runs, so from window j + 2 on
    // exactly its upload is aggregated; nothing is aggregated before anybody had weight.
    let j = net
        .events("good")
        .iter()
        .find(|e| e["event"] == "joined")
        .and_then(|e| e["window"].as_u64())
        .unwrap();
    assert!(j + 3 <= last, "the honest miner joined in time: window {j}");
    for w in 0..j + 2 {
        assert!(peers(w).is_empty(), "window {w}: nobody has weight yet");
    }
    for w in j + 2..=last {
        assert_eq!(peers(w), vec![good], "window {w}");
    }
    let val = |w: usize| steps[w]["val_loss"].as_f64().unwrap();
    assert!(
        val(last as usize) < val(5) - 0.1,
        "one honest miner still trains the model"
    );
    let gh = hashes(&net.events("good"));
    let vh = hashes(&v);
    for (w, h) in &gh {
        assert_eq!(
            Some(h),
            vh.get(w),
            "good miner agrees with the validator after window {w}"
        );
    }
    let w = consensus_weights(&run);
    assert_eq!(
        w.get(&bad).copied().unwrap_or(0.0),
        0.0,
        "the malformed uploader earns nothing: {w:?}"
    );
}

#[path = "../../net/tests/common_s3/mod.rs"]
mod common_s3;

#[test]
fn a_network_runs_on_real_s3_storage() {
    let s3 = common_s3::S3Server::start("covenant");
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("net");
    let mut net = Net::init(&run, 10);
    let last = 4;
    net.env = s3.env();
    for (role, name) in [
        ("validator", "validator-1"),
        ("miner", "miner-1"),
        ("miner", "miner-2"),
    ] {
        net.start(
            role,
            name,
            last,
            &["--store", &format!("s3://covenant/{name}")],
        );
    }
    net.wait_all(Duration::from_secs(WINDOW_SECS * 7 + 90));
    let v = net.events("validator-1");
    let logs = net.all_logs();
    let steps = of(&v, "outer_step");
    assert_eq!(steps.len() as u64, last + 1, "{logs}");
    // Window 0 is everybody's null window and window 1 is measured before anybody has
    // weight: the first outer step with peers is window 2.
    for w in 0..=last as usize {
        assert_eq!(
            steps[w]["peers"].as_array().unwrap().len(),
            if w < 2 { 0 } else { 2 },
            "S3 uploads aggregated in window {w}\n{logs}"
        );
    }
    let val = |w: usize| steps[w]["val_loss"].as_f64().unwrap();
    assert!(
        val(last as usize) < val(0) - 0.3,
        "the model learns over S3: {} -> {}",
        val(0),
        val(last as usize)
    );
    let vh = hashes(&v);
    for m in ["miner-1", "miner-2"] {
        for (w, h) in hashes(&net.events(m)) {
            assert_eq!(Some(&h), vh.get(&w), "{m} agrees after window {w}");
        }
    }
    // The objects really are in the S3 server's bucket, and the chain commits S3 URLs.
    assert!(s3
        .object_file("covenant", "miner-1/grad/00000001.bin")
        .is_file());
    assert!(s3
        .object_file("covenant", "validator-1/rec/00000001.json")
        .is_file());
    assert!(
        !run.join("store").exists(),
        "nothing went to the default directory stores"
    );
}

//! A network of real `covenant miner` / `covenant validator` processes on a real S3-compatible
//! server (the embedded chain, the `tiny` preset): the real executor with S3 stores. The
//! protocol's behaviour (joins, kills, restarts, invalid and empty windows, attacks) is tested
//! in the deterministic simulator (`crates/node/tests/sim_network.rs`).

use std::time::Duration;

mod common;
use common::*;

const WINDOW_SECS: u64 = 7;

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
    for (w, step) in steps.iter().enumerate() {
        assert_eq!(
            step["peers"].as_array().unwrap().len(),
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

//! A miner's inner loop in the simulator: it ends at the window's end, whatever the machine's
//! speed, so that the upload lands in the window's upload interval (issue 14 item 19).

use covenant_core::driver::NodeEvent;
use covenant_core::window::UploadTiming;
use covenant_node::objects::grad_key;
use covenant_node::sim::{self, SimConfig, SimSummary, World};

fn assert_holds(s: &SimSummary) {
    assert!(s.ok(), "seed {}: {:?}", s.seed, s.violations);
}

/// `(window, steps taken, steps planned)` of every window the miner trained.
fn trained(w: &World, node: &str) -> Vec<(u64, u32, u32)> {
    w.events(w.node_index(node).unwrap())
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Trained {
                window,
                steps,
                planned_steps,
                ..
            } => Some((*window, *steps, *planned_steps)),
            _ => None,
        })
        .collect()
}

/// How each of a miner's uploads of windows `0..windows` was timed, by the store's clock.
fn upload_timing(w: &World, node: &str, windows: u64) -> Vec<(u64, UploadTiming)> {
    (0..windows)
        .map(|win| {
            let at = w.stores.stored_at(node, &grad_key(win));
            (win, w.params.classify_upload(win, at))
        })
        .collect()
}

#[test]
fn a_slow_miner_stops_at_the_window_end_and_uploads_on_time() {
    // miner-3's inner steps take 6 s: the 8 steps of a window would take 48 s of a 20-s window.
    let mut c = SimConfig::new(3, 1, 8, 21);
    c.slow_steps = vec![("miner-3".into(), 10)];
    let h = c.inner_steps;
    let (s, w) = sim::run(c.clone()).unwrap();

    let slow = trained(&w, "miner-3");
    assert!(slow.len() >= 5, "miner-3 trained: {slow:?}");
    for &(win, steps, planned) in &slow {
        assert!(
            steps >= 1 && steps < h && planned == h,
            "window {win}: {steps} of {planned} steps"
        );
    }
    let timing = upload_timing(&w, "miner-3", c.windows);
    assert!(
        timing.iter().all(|x| x.1 == UploadTiming::OnTime),
        "miner-3's uploads: {timing:?}"
    );

    // Miners at normal speed still take every step.
    for m in ["miner-1", "miner-2"] {
        let t = trained(&w, m);
        assert!(t.len() >= 5, "{m} trained: {t:?}");
        assert!(t.iter().all(|x| x.1 == h && x.2 == h), "{m}: {t:?}");
        for (win, t) in upload_timing(&w, m, c.windows) {
            assert_eq!(t, UploadTiming::OnTime, "{m}'s upload of window {win}");
        }
    }
    assert_holds(&s);
}

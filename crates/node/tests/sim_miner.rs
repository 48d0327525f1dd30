//! A miner's inner loop in the simulator: it ends at the window's end, whatever the machine's
//! speed, so that the upload lands in the window's upload interval (issue 14 item 19); its
//! learning rate follows the run's window and step, however late the miner joined (item 18).

mod common;

use std::collections::BTreeMap;

use covenant_core::driver::NodeEvent;
use covenant_core::window::UploadTiming;
use covenant_node::objects::grad_key;
use covenant_node::sim::{self, Scripted, SimConfig, SimModel, SimSummary, World};

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

/// The inner learning rates of the first and the last step of every window a miner trained,
/// with the steps it took.
fn inner_lrs(w: &World, node: &str) -> BTreeMap<u64, (Option<f64>, Option<f64>, u32)> {
    w.events(w.node_index(node).unwrap())
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Trained {
                window,
                lr_first,
                lr_last,
                steps,
                ..
            } => Some((*window, (*lr_first, *lr_last, *steps))),
            _ => None,
        })
        .collect()
}

#[test]
fn tiny_joiners_and_restarted_miners_train_at_the_run_s_inner_lr() {
    // miner-1 trains from window 0; miner-2 joins at window 3; miner-3 restarts at window 3.
    let mut c = SimConfig::new(3, 1, 7, 5);
    c.model = SimModel::Tiny;
    c.data = Some(common::tiny_data());
    c.script = vec![
        Scripted::StartAt {
            node: "miner-2".into(),
            window: 3,
        },
        Scripted::RestartAt {
            node: "miner-3".into(),
            window: 3,
        },
    ];
    let (s, w) = sim::run(c).unwrap();
    assert_holds(&s);
    let opt = w.spec.optim_config();
    let lr = |win: u64, step: u32| Some(opt.lr_at(w.params.inner_step_index(win, step)));
    let veteran = inner_lrs(&w, "miner-1");
    for (win, &(first, last, steps)) in &veteran {
        assert_eq!(
            (first, last),
            (lr(*win, 0), lr(*win, steps - 1)),
            "miner-1, window {win}"
        );
    }
    for m in ["miner-2", "miner-3"] {
        let late: Vec<_> = inner_lrs(&w, m).into_iter().filter(|x| x.0 >= 4).collect();
        assert!(!late.is_empty(), "{m} trained after window 4");
        for (win, (first, last, steps)) in late {
            assert_eq!(
                veteran.get(&win).map(|v| (v.0, v.1)),
                Some((first, last)),
                "{m}, window {win}"
            );
            assert_eq!(
                (first, last),
                (lr(win, 0), lr(win, steps - 1)),
                "{m}, window {win}"
            );
        }
    }
}

//! `covenant bench window` on the production action code: every phase of a window is measured
//! and the upload is the size the wire format gives a `tiny` payload.

mod common;

use covenant_node::bench::{window_phases, PhaseBench};

#[test]
fn every_phase_of_a_window_is_measured() {
    let r = window_phases(
        &PhaseBench {
            preset: "tiny".into(),
            peers: 2,
            windows: 1,
            inner_steps: Some(3),
        },
        common::tiny_data(),
    )
    .unwrap();
    assert_eq!((r.peers, r.inner_steps), (2, 3));
    for (name, secs) in [
        ("inner", r.inner),
        ("compress", r.compress),
        ("decode", r.decode),
        ("outer step", r.outer_step),
        ("evaluate", r.evaluate),
    ] {
        assert!(secs > 0.0 && secs.is_finite(), "{name}: {secs}");
    }
    // Inner steps are the bulk of a miner's compute; decoding two payloads is not.
    assert!(r.inner > r.decode, "{r:?}");
    // A Rice-coded tiny upload: about 48 kB, over 200× below dense fp32.
    let dense = 4 * r.parameters as u64;
    assert!(
        r.upload_bytes > 10_000 && r.upload_bytes * 200 < dense,
        "{} bytes of {dense}",
        r.upload_bytes
    );
}

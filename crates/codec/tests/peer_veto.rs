//! One peer must never veto a tensor (issue 14, item 2): a peer whose values decode to something
//! non-finite, or whose norm does not fit f32, is dropped from that tensor; the others are still
//! aggregated, and every replica drops the same peers.
mod common;

use covenant_codec::{
    aggregate_tensor, aggregate_tensor_apply, CodecConfig, DropReason, DroppedPeer, ModelLayout,
    TensorPayload,
};
use proptest::prelude::*;

const HUGE: f32 = f32::MAX * 0.75;

fn layout() -> ModelLayout {
    ModelLayout::new(
        CodecConfig::default(),
        [("w", &[128usize, 256][..]), ("norm", &[256][..])],
    )
    .unwrap()
}

fn honest(l: &ModelLayout, n: u64) -> Vec<Vec<TensorPayload>> {
    (0..n)
        .map(|r| common::random_payloads(l, 100 + r))
        .collect()
}

/// A peer shaped like `like` whose used bins decode to exactly 0 but whose unused bin 3 decodes
/// to `HUGE + HUGE = inf` (lookup and shift are each finite, so a per-field check passes them).
fn unused_bin_overflow(like: &TensorPayload) -> TensorPayload {
    let mut p = like.clone();
    p.codes.iter_mut().for_each(|c| *c %= 3);
    p.shift = HUGE;
    p.lookup = vec![-HUGE, -HUGE, -HUGE, HUGE];
    p
}

/// A peer whose every value is finite (HUGE) but whose norm overflows f32.
fn norm_overflow(like: &TensorPayload) -> TensorPayload {
    let mut p = like.clone();
    p.codes.iter_mut().for_each(|c| *c = 0);
    p.shift = 0.0;
    p.lookup = vec![HUGE, 0.0, 0.0, 0.0];
    p
}

fn aggregate(l: &ModelLayout, i: usize, peers: &[&TensorPayload]) -> (Vec<f32>, Vec<DroppedPeer>) {
    let t = &l.tensors[i];
    let mut u = vec![0f32; t.geom.numel()];
    let s = aggregate_tensor(&l.config, t, peers, &mut u).unwrap();
    assert!(!s.skipped, "tensor {} skipped for every peer", t.name);
    (u, s.dropped)
}

/// Aggregating with the crafted peer gives exactly the honest peers' aggregate, wherever the
/// crafted peer sits in the peer order, through both the update and the fused apply path.
fn assert_dropped(craft: fn(&TensorPayload) -> TensorPayload, reason: DropReason) {
    let l = layout();
    let hs = honest(&l, 3);
    for i in 0..l.tensors.len() {
        let bad = craft(&hs[0][i]);
        let hon: Vec<&TensorPayload> = hs.iter().map(|p| &p[i]).collect();
        let (want, none) = aggregate(&l, i, &hon);
        assert!(none.is_empty() && want.iter().any(|&v| v != 0.0));
        for pos in 0..=hon.len() {
            let mut with = hon.clone();
            with.insert(pos, &bad);
            let (got, dropped) = aggregate(&l, i, &with);
            assert!(got == want, "tensor {i}, bad peer at {pos}: update differs");
            assert_eq!(dropped, vec![DroppedPeer { peer: pos, reason }]);
            let t = &l.tensors[i];
            let mut theta = vec![0.25f32; t.geom.numel()];
            let s = aggregate_tensor_apply(&l.config, t, &with, &mut theta, 0.5).unwrap();
            assert!(!s.skipped);
            let expect: Vec<f32> = want.iter().map(|&u| 0.25f32 + (-0.5f32) * u).collect();
            assert!(
                theta == expect,
                "tensor {i}, apply, bad peer at {pos}: θ differs"
            );
        }
    }
}

#[test]
fn unused_bin_that_overflows_does_not_veto_the_tensor() {
    assert_dropped(unused_bin_overflow, DropReason::NonFiniteValue);
}

#[test]
fn peer_whose_norm_overflows_is_dropped_not_diluting() {
    assert_dropped(norm_overflow, DropReason::NonFiniteNorm);
}

#[test]
fn nan_peer_in_memory_is_dropped() {
    assert_dropped(
        |like| {
            let mut p = like.clone();
            p.lookup[1] = f32::NAN;
            p
        },
        DropReason::NonFiniteValue,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bits one peer puts in its lookup table and shift, the tensor is aggregated
    /// (never skipped), the update is finite, and repeating the call gives the same bits.
    #[test]
    fn any_single_peer_leaves_a_finite_update(
        bits in proptest::collection::vec(any::<u32>(), 5),
        seed in any::<u64>(),
        pos in 0usize..4,
    ) {
        let l = layout();
        let hs = honest(&l, 3);
        for i in 0..l.tensors.len() {
            let mut bad = common::random_payloads(&l, seed).swap_remove(i);
            bad.lookup = bits[..4].iter().map(|&b| f32::from_bits(b)).collect();
            bad.shift = f32::from_bits(bits[4]);
            let mut with: Vec<&TensorPayload> = hs.iter().map(|p| &p[i]).collect();
            with.insert(pos.min(with.len()), &bad);
            let t = &l.tensors[i];
            let mut u = vec![0f32; t.geom.numel()];
            let s = aggregate_tensor(&l.config, t, &with, &mut u).unwrap();
            prop_assert!(!s.skipped);
            prop_assert!(u.iter().all(|v| v.is_finite()));
            let mut again = vec![1f32; t.geom.numel()];
            aggregate_tensor(&l.config, t, &with, &mut again).unwrap();
            prop_assert_eq!(u, again);
        }
    }
}

//! SparseLoCo math beyond the reference vectors: geometry edge cases, top-k, error feedback,
//! aggregation edge cases, whole-model parallel calls.
mod common;

use covenant_codec::{
    aggregate_apply_model, aggregate_tensor, aggregate_tensor_apply, compress_model,
    compress_tensor, decode_dense, largest_divisor_at_most, CodecConfig, CodecError, DeltaSource,
    DropReason, DroppedPeer, Layout, ModelLayout, TensorPayload,
};
use proptest::prelude::*;

#[test]
fn divisors_and_k() {
    assert_eq!(largest_divisor_at_most(4096, 64), 64);
    assert_eq!(largest_divisor_at_most(1376, 64), 43);
    assert_eq!(largest_divisor_at_most(200, 64), 50);
    assert_eq!(largest_divisor_at_most(67, 64), 1);
    assert_eq!(largest_divisor_at_most(45, 64), 45);
    let cfg = CodecConfig::default();
    let l = ModelLayout::new(
        cfg,
        [
            ("a", &[1376usize, 512][..]),
            ("b", &[90][..]),
            ("c", &[67][..]),
            ("d", &[67, 71][..]),
            ("e", &[3][..]),
            ("f", &[2][..]),
            ("g", &[1][..]),
        ],
    )
    .unwrap();
    let g = |i: usize| &l.tensors[i].geom;
    assert_eq!(
        g(0).layout,
        Layout::Matrix {
            rows: 1376,
            cols: 512,
            h: 43,
            w: 64
        }
    );
    assert_eq!(
        (g(0).chunk_len, g(0).k, g(0).n_chunks),
        (43 * 64, 64, 32 * 8)
    );
    assert_eq!((g(1).chunk_len, g(1).k), (45, 44));
    // prime dimension above 64: chunk length 1 → dense (every value sent)
    assert_eq!((g(2).chunk_len, g(2).k, g(2).n_chunks), (1, 1, 67));
    assert!(g(2).sends_all());
    assert_eq!((g(3).chunk_len, g(3).k), (1, 1));
    // [3] → k = min(64,3)=3 → even 2 ; [2] → 2 (all) ; [1] → dense
    assert_eq!((g(4).chunk_len, g(4).k), (3, 2));
    assert!(!g(4).sends_all());
    assert_eq!((g(5).chunk_len, g(5).k), (2, 2));
    assert_eq!((g(6).chunk_len, g(6).k), (1, 1));
}

#[test]
fn rejects_bad_config_and_shapes() {
    let bad = CodecConfig {
        bins: 5,
        ..CodecConfig::default()
    };
    assert!(matches!(
        ModelLayout::new(bad, [("a", &[4usize][..])]),
        Err(CodecError::InvalidConfig { field: "bins", .. })
    ));
    let e = ModelLayout::new(CodecConfig::default(), [("x", &[2usize, 3, 4][..])]).unwrap_err();
    assert!(matches!(e, CodecError::UnsupportedShape { ref tensor, .. } if tensor == "x"));
    let e = ModelLayout::new(CodecConfig::default(), [("x", &[0usize][..])]).unwrap_err();
    assert!(matches!(e, CodecError::UnsupportedShape { .. }));
    let e = ModelLayout::new(
        CodecConfig::default(),
        [("x", &[4usize][..]), ("x", &[4][..])],
    )
    .unwrap_err();
    assert_eq!(e, CodecError::DuplicateName("x".into()));
}

fn layout() -> ModelLayout {
    ModelLayout::new(
        CodecConfig::default(),
        [
            ("w", &[256usize, 192][..]),
            ("f", &[200, 96][..]),
            ("odd", &[90][..]),
            ("norm", &[512][..]),
            ("prime", &[67][..]),
            ("pp", &[67, 71][..]),
        ],
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The selection is the k largest magnitudes of β·e + Δ in every chunk, sorted, and the
    /// residual is exactly (β·e + Δ) − decoded.
    #[test]
    fn topk_and_error_feedback(seed in any::<u64>()) {
        let l = layout();
        let mut rng = common::Rng::new(seed);
        for t in &l.tensors {
            let g = &t.geom;
            let n = g.numel();
            let e0: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let d: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let pre: Vec<f32> = e0.iter().zip(&d).map(|(&e, &d)| 0.95f32 * e + d).collect();
            let mut ef = e0.clone();
            let p = compress_tensor(&l.config, t, &mut ef, DeltaSource::Delta(&d)).unwrap();
            let mut dense = vec![0f32; n];
            decode_dense(&l.config, t, &p, &mut dense).unwrap();
            for i in 0..n {
                prop_assert_eq!(ef[i], pre[i] - dense[i]);
            }
            prop_assert_eq!(p.codes.len(), g.n_selected());
            if !g.sends_all() {
                let offs = g.in_chunk_offsets();
                for c in 0..g.n_chunks {
                    let (base, _, _) = g.chunk_base(c);
                    let sel = &p.idx[c * g.k..(c + 1) * g.k];
                    prop_assert!(sel.windows(2).all(|w| w[0] < w[1]));
                    let min_sel = sel.iter().map(|&j| pre[base + offs[j as usize] as usize].abs()).fold(f32::INFINITY, f32::min);
                    let max_unsel = (0..g.chunk_len)
                        .filter(|j| !sel.contains(&(*j as u16)))
                        .map(|j| pre[base + offs[j] as usize].abs())
                        .fold(0f32, f32::max);
                    prop_assert!(min_sel >= max_unsel, "chunk {}: {} < {}", c, min_sel, max_unsel);
                }
            }
        }
    }

    /// Whole-model parallel compress and aggregate equal the per-tensor calls.
    #[test]
    fn model_calls_match_tensor_calls(seed in any::<u64>(), threads in 1usize..4) {
        let mut l = layout();
        l.config.threads = threads;
        let mut rng = common::Rng::new(seed);
        let deltas: Vec<Vec<f32>> = l.tensors.iter().map(|t| (0..t.geom.numel()).map(|_| rng.normal()).collect()).collect();
        let mut ef_a: Vec<Vec<f32>> = l.tensors.iter().map(|t| (0..t.geom.numel()).map(|_| rng.normal()).collect()).collect();
        let mut ef_b = ef_a.clone();
        let src: Vec<DeltaSource> = deltas.iter().map(|d| DeltaSource::Delta(d)).collect();
        let mut refs: Vec<&mut [f32]> = ef_a.iter_mut().map(|v| v.as_mut_slice()).collect();
        let got = compress_model(&l, &mut refs, &src).unwrap();
        for (i, t) in l.tensors.iter().enumerate() {
            let want = compress_tensor(&l.config, t, &mut ef_b[i], src[i]).unwrap();
            prop_assert_eq!(&got[i], &want);
        }
        prop_assert_eq!(&ef_a, &ef_b);

        let peers: Vec<Vec<TensorPayload>> = (0..3).map(|r| common::random_payloads(&l, seed ^ r)).collect();
        let peer_refs: Vec<&[TensorPayload]> = peers.iter().map(|p| p.as_slice()).collect();
        let mut theta_a: Vec<Vec<f32>> = l.tensors.iter().map(|t| vec![1.0; t.geom.numel()]).collect();
        let mut theta_b = theta_a.clone();
        let mut ta: Vec<&mut [f32]> = theta_a.iter_mut().map(|v| v.as_mut_slice()).collect();
        aggregate_apply_model(&l, &peer_refs, &mut ta, Some(0.5)).unwrap();
        for (i, t) in l.tensors.iter().enumerate() {
            let ps: Vec<&TensorPayload> = peers.iter().map(|p| &p[i]).collect();
            let mut u = vec![0f32; t.geom.numel()];
            aggregate_tensor(&l.config, t, &ps, &mut u).unwrap();
            for (th, u) in theta_b[i].iter_mut().zip(&u) {
                *th += -0.5f32 * u;
            }
        }
        prop_assert_eq!(&theta_a, &theta_b);
    }
}

#[test]
fn aggregation_mean_over_selecting_peers_only() {
    // Two peers of equal norm; peer 1 selects the same coordinates as peer 0 in chunk 0 only.
    let l = ModelLayout::new(CodecConfig::default(), [("v", &[8usize][..])]).unwrap();
    let t = &l.tensors[0];
    assert!(t.geom.sends_all() && t.geom.k == 8);
    let a = TensorPayload {
        idx: vec![],
        codes: vec![3, 0, 0, 0, 0, 0, 0, 0],
        lookup: vec![0.0, 0.0, 0.0, 2.0],
        shift: 0.0,
    };
    let b = TensorPayload {
        idx: vec![],
        codes: vec![0, 0, 0, 0, 0, 0, 0, 3],
        lookup: vec![0.0, 0.0, 0.0, 2.0],
        shift: 0.0,
    };
    let mut u = vec![0f32; 8];
    let s = aggregate_tensor(&l.config, t, &[&a, &b], &mut u).unwrap();
    assert_eq!(s.norms, vec![2.0, 2.0]);
    // all-sent: both peers selected every coordinate, so zeros count in the mean
    assert_eq!(u, vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);

    // sparse: chunk length 45, k 44
    let l = ModelLayout::new(CodecConfig::default(), [("v", &[45usize][..])]).unwrap();
    let t = &l.tensors[0];
    let idx_a: Vec<u16> = (0..44).collect();
    let idx_b: Vec<u16> = (1..45).collect();
    let mut codes = vec![2u8; 44];
    codes[0] = 3;
    let lookup = vec![-1.0, -0.5, 0.0, 4.0];
    let a = TensorPayload {
        idx: idx_a,
        codes: codes.clone(),
        lookup: lookup.clone(),
        shift: 0.0,
    };
    let b = TensorPayload {
        idx: idx_b,
        codes,
        lookup,
        shift: 0.0,
    };
    let mut u = vec![0f32; 45];
    aggregate_tensor(&l.config, t, &[&a, &b], &mut u).unwrap();
    assert_eq!(u[0], 4.0); // only peer a selected index 0
    assert_eq!(u[1], 2.0); // a: 0, b: 4 → mean 2
    assert_eq!(u[44], 0.0);
}

#[test]
fn aggregation_clips_to_lower_median_and_drops_overflowing_peers() {
    let l = ModelLayout::new(CodecConfig::default(), [("v", &[4usize][..])]).unwrap();
    let t = &l.tensors[0];
    let mk = |x: f32| TensorPayload {
        idx: vec![],
        codes: vec![3, 0, 0, 0],
        lookup: vec![0.0, 0.0, 0.0, x],
        shift: 0.0,
    };
    let ps = [mk(1.0), mk(2.0), mk(3.0), mk(4.0)];
    let refs: Vec<&TensorPayload> = ps.iter().collect();
    let mut u = vec![0f32; 4];
    let s = aggregate_tensor(&l.config, t, &refs, &mut u).unwrap();
    assert_eq!(s.median, 2.0); // lower median of 1,2,3,4
    assert_eq!(s.factors[0], 1.0);
    assert!((s.factors[3] - 0.5).abs() < 1e-6);
    assert!((u[0] - (1.0 + 2.0 + 2.0 + 2.0) / 4.0).abs() < 1e-6);

    // huge values whose sum would overflow f32: the largest peers are dropped (the later one on
    // a tie) until the rest cannot overflow; the tensor is still aggregated
    let big = [mk(3.0e38), mk(3.0e38), mk(3.0e38)];
    let refs: Vec<&TensorPayload> = big.iter().collect();
    let s = aggregate_tensor(&l.config, t, &refs, &mut u).unwrap();
    assert!(!s.skipped);
    let over = |peer| DroppedPeer {
        peer,
        reason: DropReason::Overflow,
    };
    assert_eq!(s.dropped, vec![over(1), over(2)]);
    assert_eq!(s.factors, vec![1.0, 0.0, 0.0]);
    assert_eq!(u, vec![3.0e38, 0.0, 0.0, 0.0]);
    let mut theta = vec![1.0f32; 4];
    let s = aggregate_tensor_apply(&l.config, t, &refs, &mut theta, 1.0).unwrap();
    assert_eq!(s.dropped.len(), 2);
    assert_eq!(theta, vec![1.0 - 3.0e38, 1.0, 1.0, 1.0]);
    // a sum that is large but fits is not touched
    let fits = [mk(1.0e38), mk(1.0e38), mk(1.0e38)];
    let refs: Vec<&TensorPayload> = fits.iter().collect();
    let s = aggregate_tensor(&l.config, t, &refs, &mut u).unwrap();
    assert!(s.dropped.is_empty());
    assert_eq!(u[0], (1.0e38f32 + 1.0e38 + 1.0e38) / 3.0);

    // a malformed in-memory payload is an error, not a panic
    let bad = TensorPayload {
        idx: vec![],
        codes: vec![3, 0, 9, 0],
        lookup: vec![0.0; 4],
        shift: 0.0,
    };
    assert!(matches!(
        aggregate_tensor(&l.config, t, &[&bad], &mut u),
        Err(CodecError::MalformedPayload { .. })
    ));
    // no peers: zero update
    let s = aggregate_tensor(&l.config, t, &[], &mut u).unwrap();
    assert!(!s.skipped);
    assert_eq!(u, vec![0.0; 4]);
    let mut theta = vec![1.0f32; 4];
    aggregate_tensor_apply(&l.config, t, &[], &mut theta, 1.0).unwrap();
    assert_eq!(theta, vec![1.0; 4]);
}

#[test]
fn compress_reports_bad_input() {
    let l = layout();
    let t = &l.tensors[0];
    let mut ef = vec![0f32; 3];
    let d = vec![0f32; t.geom.numel()];
    let e = compress_tensor(&l.config, t, &mut ef, DeltaSource::Delta(&d)).unwrap_err();
    assert!(matches!(
        e,
        CodecError::LengthMismatch {
            what: "error feedback",
            ..
        }
    ));
    let mut ef = vec![0f32; t.geom.numel()];
    let mut d = vec![1f32; t.geom.numel()];
    d[5] = f32::NAN;
    let e = compress_tensor(&l.config, t, &mut ef, DeltaSource::Delta(&d)).unwrap_err();
    assert!(matches!(e, CodecError::NonFinite { .. }), "{e}");
}

#[test]
fn diff_source_equals_delta_source() {
    let l = layout();
    let t = &l.tensors[1];
    let n = t.geom.numel();
    let mut rng = common::Rng::new(3);
    let before: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    let after: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    let delta: Vec<f32> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
    let mut e1 = vec![0.5f32; n];
    let mut e2 = e1.clone();
    let p1 = compress_tensor(&l.config, t, &mut e1, DeltaSource::Delta(&delta)).unwrap();
    let p2 = compress_tensor(
        &l.config,
        t,
        &mut e2,
        DeltaSource::Diff {
            before: &before,
            after: &after,
        },
    )
    .unwrap();
    assert_eq!(p1, p2);
    assert_eq!(e1, e2);
}

#[test]
fn zero_payload_decodes_to_zero() {
    let l = layout();
    for t in &l.tensors {
        let p = TensorPayload::zeros(&l.config, t);
        let mut out = vec![1f32; t.geom.numel()];
        decode_dense(&l.config, t, &p, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0.0), "{}", t.name);
        assert!(p.is_zero(), "{}", t.name);
        // Any non-zero decoded value makes it a real update.
        let mut q = p.clone();
        q.shift = 1e-9;
        assert!(!q.is_zero());
        let mut q = p.clone();
        q.lookup[0] = -0.5;
        assert!(!q.is_zero());
        // A non-zero lookup entry that no code uses still decodes to zeros.
        let mut q = p.clone();
        q.lookup[3] = 2.0;
        assert!(q.is_zero());
        // Shift and lookup cancelling: zero values.
        let mut q = p.clone();
        q.shift = 0.25;
        q.lookup[0] = -0.25;
        assert!(q.is_zero());
    }
}

#[test]
fn selection_with_heavy_ties_keeps_k_lowest_indices() {
    let l = ModelLayout::new(CodecConfig::default(), [("w", &[128usize, 128][..])]).unwrap();
    let t = &l.tensors[0];
    let n = t.geom.numel();
    for fill in [0.0f32, 1.0, -3.5] {
        let mut ef = vec![0f32; n];
        let d = vec![fill; n];
        let p = compress_tensor(&l.config, t, &mut ef, DeltaSource::Delta(&d)).unwrap();
        assert_eq!(p.idx.len(), t.geom.n_selected());
        for c in 0..t.geom.n_chunks {
            let want: Vec<u16> = (0..64).collect();
            assert_eq!(
                &p.idx[c * 64..(c + 1) * 64],
                &want[..],
                "fill {fill} chunk {c}"
            );
        }
    }
    // a few large values among ties: they are always selected
    let mut d = vec![1.0f32; n];
    d[5] = 9.0;
    d[128 * 3 + 7] = -9.0; // row 3, col 7 → chunk 0, in-chunk index 3·64 + 7
    let mut ef = vec![0f32; n];
    let p = compress_tensor(&l.config, t, &mut ef, DeltaSource::Delta(&d)).unwrap();
    assert!(p.idx[..64].contains(&5) && p.idx[..64].contains(&(3 * 64 + 7)));
}

#[test]
fn single_peer_clipped_to_a_given_median() {
    let l = ModelLayout::new(CodecConfig::default(), [("v", &[4usize][..])]).unwrap();
    let t = &l.tensors[0];
    let p = TensorPayload {
        idx: vec![],
        codes: vec![3, 3, 3, 3],
        lookup: vec![0.0, 0.0, 0.0, 2.0],
        shift: 0.0,
    };
    let mut u = vec![0f32; 4];
    // ‖v‖ = 4; clipped to 2 → factor 0.5
    let s = covenant_codec::aggregate_tensor_clipped_to(&l.config, t, &[&p], 2.0, &mut u).unwrap();
    assert_eq!(s.median, 2.0);
    assert_eq!(s.norms, vec![4.0]);
    assert!(u.iter().all(|&x| (x - 1.0).abs() < 1e-6), "{u:?}");
    // a larger median never scales up
    covenant_codec::aggregate_tensor_clipped_to(&l.config, t, &[&p], 100.0, &mut u).unwrap();
    assert_eq!(u, vec![2.0; 4]);
}

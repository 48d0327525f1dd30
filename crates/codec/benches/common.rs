//! Fixtures shared by the criterion bench and the report example.
#![allow(dead_code)]
use covenant_codec::{compress_model, CodecConfig, DeltaSource, ModelLayout, TensorPayload};

use crate::shapes::fill_normal;

pub fn layout(shapes: &[(String, Vec<usize>)]) -> ModelLayout {
    ModelLayout::new(
        CodecConfig::default(),
        shapes.iter().map(|(n, s)| (n.clone(), s.as_slice())),
    )
    .expect("valid shapes")
}

/// θ0, θ and the error feedback for every tensor.
pub struct MinerState {
    pub before: Vec<Vec<f32>>,
    pub after: Vec<Vec<f32>>,
    pub ef: Vec<Vec<f32>>,
}

pub fn miner_state(layout: &ModelLayout, seed: u64) -> MinerState {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut ef = Vec::new();
    for (i, t) in layout.tensors.iter().enumerate() {
        let n = t.geom.numel();
        let mut b = vec![0f32; n];
        fill_normal(&mut b, seed ^ (i as u64 * 3 + 1), 0.02);
        let mut d = vec![0f32; n];
        fill_normal(&mut d, seed ^ (i as u64 * 3 + 2), 1e-3);
        let a: Vec<f32> = b.iter().zip(&d).map(|(b, d)| b - d).collect();
        let mut e = vec![0f32; n];
        fill_normal(&mut e, seed ^ (i as u64 * 3 + 3), 1e-3);
        before.push(b);
        after.push(a);
        ef.push(e);
    }
    MinerState { before, after, ef }
}

pub fn compress_state(layout: &ModelLayout, st: &mut MinerState) -> Vec<TensorPayload> {
    let src: Vec<DeltaSource> = st
        .before
        .iter()
        .zip(&st.after)
        .map(|(b, a)| DeltaSource::Diff {
            before: b,
            after: a,
        })
        .collect();
    let mut refs: Vec<&mut [f32]> = st.ef.iter_mut().map(|v| v.as_mut_slice()).collect();
    compress_model(layout, &mut refs, &src).expect("compress")
}

/// `n` peers' payloads: each peer's delta is a different random draw.
pub fn peer_payloads(layout: &ModelLayout, n: usize) -> Vec<Vec<TensorPayload>> {
    (0..n)
        .map(|r| {
            let mut ef: Vec<Vec<f32>> = layout
                .tensors
                .iter()
                .map(|t| vec![0f32; t.geom.numel()])
                .collect();
            let deltas: Vec<Vec<f32>> = layout
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut d = vec![0f32; t.geom.numel()];
                    fill_normal(
                        &mut d,
                        1000 + r as u64 * 131 + i as u64,
                        1e-3 * (1.0 + 0.1 * r as f32),
                    );
                    d
                })
                .collect();
            let src: Vec<DeltaSource> = deltas.iter().map(|d| DeltaSource::Delta(d)).collect();
            let mut refs: Vec<&mut [f32]> = ef.iter_mut().map(|v| v.as_mut_slice()).collect();
            compress_model(layout, &mut refs, &src).expect("compress")
        })
        .collect()
}

/// Copy bandwidth (read + write bytes per second) over 256 MiB buffers, with `threads` threads.
pub fn copy_bandwidth(threads: usize) -> f64 {
    let n = 64 << 20; // 64 Mi f32 = 256 MiB
    let src = vec![1f32; n];
    let mut dst = vec![0f32; n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        std::thread::scope(|s| {
            let per = n.div_ceil(threads);
            for (d, sc) in dst.chunks_mut(per).zip(src.chunks(per)) {
                s.spawn(move || d.copy_from_slice(sc));
            }
        });
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(&dst);
    }
    (2 * n * 4) as f64 / best
}

/// Triad `c = a + 0.95·b` bandwidth (3 arrays of 256 MiB counted), `threads` threads.
pub fn triad_bandwidth(threads: usize) -> f64 {
    let n = 64 << 20;
    let a = vec![1f32; n];
    let b = vec![2f32; n];
    let mut c = vec![0f32; n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        std::thread::scope(|s| {
            let per = n.div_ceil(threads);
            for ((c, a), b) in c.chunks_mut(per).zip(a.chunks(per)).zip(b.chunks(per)) {
                s.spawn(move || {
                    for ((c, a), b) in c.iter_mut().zip(a).zip(b) {
                        *c = a + 0.95 * b;
                    }
                });
            }
        });
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(&c);
    }
    (3 * n * 4) as f64 / best
}

#![allow(dead_code)]
use covenant_codec::{compress_tensor, DeltaSource, ModelLayout, TensorPayload};

/// Deterministic xorshift64* generator (tests need no rand crate).
pub struct Rng(pub u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Approximately normal (sum of 4 uniforms, centred).
    pub fn normal(&mut self) -> f32 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0) * 1.7
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Compresses random data for every tensor of the layout.
pub fn random_payloads(layout: &ModelLayout, seed: u64) -> Vec<TensorPayload> {
    let mut rng = Rng::new(seed);
    layout
        .tensors
        .iter()
        .map(|t| {
            let n = t.geom.numel();
            let mut ef: Vec<f32> = (0..n).map(|_| rng.normal() * 0.1).collect();
            let d: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            compress_tensor(&layout.config, t, &mut ef, DeltaSource::Delta(&d)).unwrap()
        })
        .collect()
}

/// A random but valid payload (arbitrary index sets, codes, lookup), not from compression.
pub fn arbitrary_payloads(layout: &ModelLayout, seed: u64) -> Vec<TensorPayload> {
    let mut rng = Rng::new(seed);
    let bins = layout.config.bins;
    layout
        .tensors
        .iter()
        .map(|t| {
            let g = &t.geom;
            let mut idx = Vec::new();
            if !g.sends_all() {
                let mut mark = vec![false; g.chunk_len];
                for _ in 0..g.n_chunks {
                    mark.iter_mut().for_each(|m| *m = false);
                    let mut left = g.k;
                    while left > 0 {
                        let j = rng.below(g.chunk_len);
                        if !mark[j] {
                            mark[j] = true;
                            left -= 1;
                        }
                    }
                    idx.extend((0..g.chunk_len).filter(|&j| mark[j]).map(|j| j as u16));
                }
            }
            TensorPayload {
                idx,
                codes: (0..g.n_selected()).map(|_| rng.below(bins) as u8).collect(),
                lookup: (0..bins).map(|_| rng.normal()).collect(),
                shift: rng.normal(),
            }
        })
        .collect()
}

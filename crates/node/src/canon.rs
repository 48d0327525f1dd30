//! The canonical model: the parameters every honest node holds after each outer step, as flat
//! f32 buffers in layout order. Outer steps are applied here by the codec (plain Rust, one
//! thread, fixed order), so the result is bit-identical on every node that aggregates the same
//! uploads; its BLAKE3 hash is what validators publish and joiners check.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use covenant_codec::{ModelLayout, TensorPayload};
use covenant_core::Fingerprint;
use covenant_core::Uid;
use covenant_model::ParamView;

/// Decoded uploads of a window by uid, with their sizes in bytes.
pub type Gathered = BTreeMap<Uid, (Vec<TensorPayload>, u64)>;

#[derive(Clone)]
pub struct Canon {
    pub layout: ModelLayout,
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub theta: Vec<Vec<f32>>,
}

impl Canon {
    pub fn from_views(layout: ModelLayout, views: Vec<ParamView>) -> Result<Self> {
        ensure!(
            views.len() == layout.tensors.len(),
            "model has {} tensors, layout {}",
            views.len(),
            layout.tensors.len()
        );
        let mut names = Vec::new();
        let mut shapes = Vec::new();
        let mut theta = Vec::new();
        for (v, t) in views.into_iter().zip(&layout.tensors) {
            ensure!(
                v.name == t.name,
                "tensor {} where the layout has {}",
                v.name,
                t.name
            );
            names.push(v.name);
            shapes.push(v.shape);
            theta.push(v.data);
        }
        Ok(Canon {
            layout,
            names,
            shapes,
            theta,
        })
    }

    pub fn views(&self) -> Vec<ParamView> {
        self.names
            .iter()
            .zip(&self.shapes)
            .zip(&self.theta)
            .map(|((n, s), d)| ParamView {
                name: n.clone(),
                shape: s.clone(),
                data: d.clone(),
            })
            .collect()
    }

    /// BLAKE3 over the parameters' bytes in layout order.
    pub fn hash(&self) -> [u8; 32] {
        hash_params(&self.theta)
    }

    /// Aggregates `peers` (each one payload per tensor) and steps θ ← θ − lr·update.
    pub fn apply(&mut self, peers: &[&[TensorPayload]], lr: f32) -> Result<()> {
        if peers.is_empty() {
            return Ok(());
        }
        let mut t: Vec<&mut [f32]> = self.theta.iter_mut().map(|v| v.as_mut_slice()).collect();
        covenant_codec::aggregate_apply_model(&self.layout, peers, &mut t, Some(lr))?;
        Ok(())
    }

    /// Aggregates the uploads of `order` found in `got` (in that order; uids missing from `got`
    /// are skipped) and steps θ ← θ − lr·update.
    pub fn apply_selected(&mut self, order: &[Uid], got: &Gathered, lr: f32) -> Result<()> {
        let peers: Vec<&[TensorPayload]> = order
            .iter()
            .filter_map(|u| got.get(u).map(|(p, _)| p.as_slice()))
            .collect();
        self.apply(&peers, lr)
    }

    /// `fingerprint_values` values per tensor at positions fixed by the run seed.
    pub fn fingerprint(&self, seed: u64, per_tensor: usize) -> Fingerprint {
        fingerprint_of(&self.theta, seed, per_tensor)
    }
}

pub fn hash_params(theta: &[Vec<f32>]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(1 << 16);
    for t in theta {
        for c in t.chunks(1 << 14) {
            buf.clear();
            for x in c {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            h.update(&buf);
        }
    }
    *h.finalize().as_bytes()
}

/// Positions: SplitMix64 over (seed, tensor index, j) modulo the tensor's length.
pub fn fingerprint_of(theta: &[Vec<f32>], seed: u64, per_tensor: usize) -> Fingerprint {
    let tensors = theta
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                return Vec::new();
            }
            let s = covenant_core::rng::derive_seed(seed, &[0xF1F1, i as u64]);
            let mut rng = covenant_core::rng::SplitMix64::new(s);
            (0..per_tensor)
                .map(|_| t[rng.below(t.len() as u64) as usize])
                .collect()
        })
        .collect();
    Fingerprint { tensors }
}

pub fn hex(h: &[u8; 32]) -> String {
    covenant_net::hex::encode(h)
}

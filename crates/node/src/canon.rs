//! The canonical model: the parameters every honest node holds after each outer step, as flat
//! f32 buffers in layout order. Outer steps are applied here by the codec (plain Rust, one
//! thread, fixed order), so the result is bit-identical on every node that aggregates the same
//! uploads; its BLAKE3 hash is what replicas compare and validators publish.

use std::collections::BTreeMap;

use covenant_codec::{CodecError, ModelLayout, TensorPayload};
use covenant_core::driver::Hash;
use covenant_core::scoring::fingerprint_positions;
use covenant_core::{Fingerprint, Uid};

use crate::env::SparseValues;

/// Decoded uploads of a window by uid.
pub type Gathered = BTreeMap<Uid, std::sync::Arc<Vec<TensorPayload>>>;

#[derive(Clone, Debug, PartialEq)]
pub struct Canon {
    pub layout: ModelLayout,
    pub theta: Vec<Vec<f32>>,
}

impl Canon {
    /// `theta[i]` belongs to `layout.tensors[i]`.
    pub fn new(layout: ModelLayout, theta: Vec<Vec<f32>>) -> Result<Self, CodecError> {
        if theta.len() != layout.tensors.len() {
            return Err(CodecError::TensorCount {
                what: "parameters",
                got: theta.len(),
                expected: layout.tensors.len(),
            });
        }
        for (t, l) in theta.iter().zip(&layout.tensors) {
            if t.len() != l.geom.numel() {
                return Err(CodecError::LengthMismatch {
                    tensor: l.name.clone(),
                    what: "parameters",
                    got: t.len(),
                    expected: l.geom.numel(),
                });
            }
        }
        Ok(Canon { layout, theta })
    }

    /// BLAKE3 over the parameters' bytes in layout order.
    pub fn hash(&self) -> Hash {
        hash_params(&self.theta)
    }

    /// Aggregates `peers` (each one payload per tensor, in this order) and steps
    /// θ ← θ − lr·update.
    pub fn apply(&mut self, peers: &[&[TensorPayload]], lr: f32) -> Result<(), CodecError> {
        if peers.is_empty() {
            return Ok(());
        }
        let mut t: Vec<&mut [f32]> = self.theta.iter_mut().map(|v| v.as_mut_slice()).collect();
        covenant_codec::aggregate_apply_model(&self.layout, peers, &mut t, Some(lr))?;
        Ok(())
    }

    /// The lower-median norm of `peers`' decoded updates, per tensor: what the outer step clips
    /// every peer to, and what a lone update is clipped to when it is evaluated (SPEC §5).
    pub fn clip_norms(&self, peers: &[&[TensorPayload]]) -> Result<Vec<f32>, CodecError> {
        let cfg = &self.layout.config;
        let n = self.layout.tensors.len();
        self.layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ps = tensor_of(peers, i, n)?;
                Ok(covenant_codec::tensor_stats(cfg, t, &ps)?.median)
            })
            .collect()
    }

    /// Steps θ ← θ − lr·update with `peer`'s update alone, every tensor clipped to `norms`
    /// (from [`Canon::clip_norms`]). A tensor whose clipped update is not finite is left alone.
    /// Returns the update's norm over the clip norm, the median over tensors (tensors with a
    /// clip norm of 0 left out; 1 when none is left).
    pub fn apply_clipped(
        &mut self,
        peer: &[TensorPayload],
        norms: &[f32],
        lr: f32,
    ) -> Result<f64, CodecError> {
        let theta = &mut self.theta;
        clipped_each(&self.layout, peer, norms, |i, update| {
            for (p, u) in theta[i].iter_mut().zip(update.unwrap_or(&[])) {
                *p -= lr * u;
            }
        })
    }

    /// [`Canon::apply_clipped`] as a sparse write, without changing or copying the model:
    /// the values `peer`'s clipped update alone would give the positions it changes, the
    /// canonical values there (to write back), and its norm ratio.
    pub fn lone_update(
        &self,
        peer: &[TensorPayload],
        norms: &[f32],
        lr: f32,
    ) -> Result<LoneUpdate, CodecError> {
        let (mut new_values, mut old_values) = (SparseValues::default(), SparseValues::default());
        let norm_ratio = clipped_each(&self.layout, peer, norms, |i, update| {
            let (mut pos, mut new, mut old) = (Vec::new(), Vec::new(), Vec::new());
            for (j, (&p, &u)) in self.theta[i].iter().zip(update.unwrap_or(&[])).enumerate() {
                if u != 0.0 {
                    pos.push(j as u32);
                    new.push(p - lr * u);
                    old.push(p);
                }
            }
            new_values.tensors.push((pos.clone(), new));
            old_values.tensors.push((pos, old));
        })?;
        Ok(LoneUpdate {
            new: new_values,
            old: old_values,
            norm_ratio,
        })
    }

    /// `per_tensor` values per tensor at the run's fingerprint positions.
    pub fn fingerprint(&self, seed: u64, per_tensor: usize) -> Fingerprint {
        fingerprint_of(&self.theta, seed, per_tensor)
    }
}

/// `peer`'s update of each tensor `i` alone, clipped to `norms[i]`, passed in order to `f`
/// (`None` where the clipped update is not finite); returns the update's norm over the clip
/// norm, the median over tensors (tensors with a clip norm of 0 left out; 1 when none is left).
fn clipped_each(
    layout: &ModelLayout,
    peer: &[TensorPayload],
    norms: &[f32],
    mut f: impl FnMut(usize, Option<&[f32]>),
) -> Result<f64, CodecError> {
    let n = layout.tensors.len();
    if norms.len() != n {
        return Err(CodecError::TensorCount {
            what: "clip norms",
            got: norms.len(),
            expected: n,
        });
    }
    let mut update = Vec::new();
    let mut ratios = Vec::with_capacity(n);
    for (i, t) in layout.tensors.iter().enumerate() {
        let ps = tensor_of(&[peer], i, n)?;
        update.resize(t.geom.numel(), 0.0);
        let stats = covenant_codec::aggregate_tensor_clipped_to(
            &layout.config,
            t,
            &ps,
            norms[i],
            &mut update,
        )?;
        if norms[i] > 0.0 {
            ratios.push(f64::from(stats.norms[0]) / f64::from(norms[i]));
        }
        f(i, (!stats.skipped).then_some(update.as_slice()));
    }
    ratios.sort_by(f64::total_cmp);
    Ok(ratios
        .get(ratios.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(1.0))
}

/// Tensor `i` of every peer, checking that each peer has one payload per tensor (`n`).
fn tensor_of<'a>(
    peers: &[&'a [TensorPayload]],
    i: usize,
    n: usize,
) -> Result<Vec<&'a TensorPayload>, CodecError> {
    peers
        .iter()
        .map(|p| {
            p.get(i)
                .filter(|_| p.len() == n)
                .ok_or(CodecError::TensorCount {
                    what: "a peer payload",
                    got: p.len(),
                    expected: n,
                })
        })
        .collect()
}

/// One peer's update alone as a sparse write ([`Canon::lone_update`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoneUpdate {
    /// The values the update gives the positions it changes.
    pub new: SparseValues,
    /// The canonical values at those positions.
    pub old: SparseValues,
    /// Its norm over the clip norm, the median over tensors (see [`Canon::apply_clipped`]).
    pub norm_ratio: f64,
}

pub fn hash_params(theta: &[Vec<f32>]) -> Hash {
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

/// The values of `theta` at [`fingerprint_positions`].
pub fn fingerprint_of(theta: &[Vec<f32>], seed: u64, per_tensor: usize) -> Fingerprint {
    let lens: Vec<usize> = theta.iter().map(Vec::len).collect();
    let tensors = fingerprint_positions(seed, &lens, per_tensor)
        .into_iter()
        .zip(theta)
        .map(|(pos, t)| pos.into_iter().map(|i| t[i]).collect())
        .collect();
    Fingerprint { tensors }
}

pub fn hex(h: &Hash) -> String {
    covenant_core::driver::hex(h)
}

#[cfg(test)]
mod tests {
    use covenant_codec::{compress_model, CodecConfig, DeltaSource};
    use covenant_core::rng::SplitMix64;

    use super::*;

    fn model(seed: u64) -> (ModelLayout, Vec<Vec<f32>>) {
        let layout = ModelLayout::new(
            CodecConfig::default(),
            [
                ("a", &[96usize, 64][..]),
                ("b", &[200][..]),
                ("c", &[7, 3][..]),
            ],
        )
        .unwrap();
        let mut r = SplitMix64::new(seed);
        let theta = layout
            .tensors
            .iter()
            .map(|t| (0..t.geom.numel()).map(|_| r.normal() as f32).collect())
            .collect();
        (layout, theta)
    }

    fn upload(
        layout: &ModelLayout,
        theta: &[Vec<f32>],
        seed: u64,
        scale: f32,
    ) -> Vec<TensorPayload> {
        let mut r = SplitMix64::new(seed);
        let after: Vec<Vec<f32>> = theta
            .iter()
            .map(|t| t.iter().map(|x| x + scale * r.normal() as f32).collect())
            .collect();
        let mut ef: Vec<Vec<f32>> = theta.iter().map(|t| vec![0.0; t.len()]).collect();
        let mut efs: Vec<&mut [f32]> = ef.iter_mut().map(|e| e.as_mut_slice()).collect();
        compress_model(layout, &mut efs, &DeltaSource::diffs(theta, &after)).unwrap()
    }

    /// Issue 16: the validator tries a lone update by writing only the positions it changes;
    /// that must give bit for bit the model `apply_clipped` gives on a copy, and writing the
    /// old values back the canonical model.
    #[test]
    fn a_lone_update_written_in_place_is_the_clipped_step_and_reverts_exactly() {
        let (layout, theta) = model(1);
        let canon = Canon::new(layout.clone(), theta.clone()).unwrap();
        let peers: Vec<Vec<TensorPayload>> = (0..3)
            .map(|i| upload(&layout, &theta, 10 + i, 0.01 * (i + 1) as f32))
            .collect();
        let refs: Vec<&[TensorPayload]> = peers.iter().map(Vec::as_slice).collect();
        let norms = canon.clip_norms(&refs).unwrap();
        for p in &peers {
            let mut copy = canon.clone();
            let ratio = copy.apply_clipped(p, &norms, 0.2).unwrap();
            let lone = canon.lone_update(p, &norms, 0.2).unwrap();
            assert_eq!(lone.norm_ratio, ratio);
            let written = lone.new.len();
            assert!(written > 0 && written < theta.iter().map(Vec::len).sum::<usize>() / 10);
            let mut live = theta.clone();
            lone.new.write_into(&mut live).unwrap();
            assert_eq!(
                live, copy.theta,
                "the same bits as the clipped step on a copy"
            );
            lone.old.write_into(&mut live).unwrap();
            assert_eq!(live, theta, "written back exactly");
        }
    }
}

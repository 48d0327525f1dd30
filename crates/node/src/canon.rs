//! The canonical model: the parameters every honest node holds after each outer step, as flat
//! f32 buffers in layout order. Outer steps are applied here by the codec (plain Rust, one
//! thread, fixed order), so the result is bit-identical on every node that aggregates the same
//! uploads; its BLAKE3 hash is what replicas compare and validators publish.

use std::collections::BTreeMap;

use covenant_codec::{CodecError, ModelLayout, TensorPayload};
use covenant_core::driver::Hash;
use covenant_core::scoring::fingerprint_positions;
use covenant_core::{Fingerprint, Uid};

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

    /// `per_tensor` values per tensor at the run's fingerprint positions.
    pub fn fingerprint(&self, seed: u64, per_tensor: usize) -> Fingerprint {
        fingerprint_of(&self.theta, seed, per_tensor)
    }
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

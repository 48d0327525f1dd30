//! What each role needs (`covenant model info --roles`): memory by part, bytes up and down and
//! compute per window, from the model's shapes and the run spec alone (nothing is allocated).
//!
//! Memory is what a node of this implementation holds on one machine (fp32 throughout, as the
//! nodes run); docs/SCALING.md checks it against measured peak RSS and works out the sharding a
//! 72B run needs.

use covenant_codec::{wire, CodecError, ModelLayout};
use covenant_model::ModelConfig;

use crate::RunSpec;

/// The process around the model: the binary, libtorch and its thread pools, the async runtime,
/// the chain's client, the mapped data, the allocator's arenas. Measured once: the `tiny`
/// demo's validators' peak RSS (266 and 279 MiB) less what this module counts for them; the
/// other roles and `small` check it (docs/SCALING.md, "Cost per role").
pub const RUNTIME_BYTES: u64 = 213 << 20;

/// One part of a role's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: &'static str,
    pub bytes: u64,
}

/// What one role needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleCost {
    pub role: &'static str,
    pub memory: Vec<Part>,
    /// Bytes sent and received per window (uploads and downloads; chain traffic left out).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Floating-point operations per window (matrix products; 2 per multiply-add).
    pub flops: f64,
}

impl RoleCost {
    pub fn memory_total(&self) -> u64 {
        self.memory.iter().map(|p| p.bytes).sum()
    }
}

/// A run's costs per role.
#[derive(Debug, Clone, PartialEq)]
pub struct Costs {
    pub parameters: u64,
    /// One upload (signed, indices coded as the run spec says) and the dense fp32 update it
    /// stands for.
    pub upload_bytes: u64,
    pub dense_bytes: u64,
    /// Peers a validator downloads per window (`peers` capped by what it looks at).
    pub downloads: u64,
    /// Full evaluations per window the validator's figures assume (`uids_per_window`).
    pub evaluations: u64,
    pub miner: RoleCost,
    pub validator: RoleCost,
}

/// Figures of one model on one run spec, with `peers` miners in the network.
pub fn roles(spec: &RunSpec, model: &ModelConfig, peers: u64) -> Result<Costs, CodecError> {
    let shapes = model.param_shapes();
    let layout = ModelLayout::new(
        spec.codec_config(),
        shapes.iter().map(|(n, s)| (n.clone(), s.as_slice())),
    )?;
    let p = model.num_params();
    let selected: u64 = layout
        .tensors
        .iter()
        .map(|t| t.geom.n_selected() as u64)
        .sum();
    let largest = layout
        .tensors
        .iter()
        .map(|t| t.geom.numel() as u64)
        .max()
        .unwrap_or(0);
    let coding = wire::EncodeOptions {
        index_coding: spec.index_coding(),
    };
    let upload = wire::expected_encoded_len(&layout, coding) as u64;
    // Decoded in memory: a u16 index and a u8 code per value.
    let decoded = 3 * selected;
    let rp = &spec.params;
    let g = rp.aggregation_size as u64;
    let gathered = g.min(peers);
    let looked = (rp.uids_per_window as u64 + rp.eval_spares as u64 + g).min(peers);
    let evaluations = (rp.uids_per_window as u64).min(looked);
    let seq = model.max_seq_len as u64;
    let batch = spec.batch as u64;
    let tokens = batch * seq;
    let f = 4u64; // bytes of an fp32 value
    let miner = RoleCost {
        role: "miner",
        memory: vec![
            part("runtime (binary, libtorch)", RUNTIME_BYTES),
            part("parameters (the live model)", f * p),
            part("gradients", f * p),
            part("AdamW moments", 2 * f * p),
            part("error feedback", f * p),
            part("canonical model (θ0)", f * p),
            part("the trained model read back to compress", f * p),
            part(
                "payloads (own upload, gathered)",
                upload + gathered * (decoded + upload),
            ),
            part(
                "activations (training, batch)",
                f * tokens * train_floats_per_token(model),
            ),
        ],
        bytes_up: upload,
        bytes_down: gathered * upload,
        flops: rp.inner_steps as f64 * 3.0 * forward_flops(model, tokens),
    };
    let eval_seqs = rp.eval_sequences as u64;
    let forwards = eval_seqs + looked * rp.screen_sequences as u64 + evaluations * 3 * eval_seqs;
    let validator = RoleCost {
        role: "validator",
        memory: vec![
            part("runtime (binary, libtorch)", RUNTIME_BYTES),
            part("parameters (the live model)", f * p),
            part("canonical model", f * p),
            part(
                "payloads (looked at, copies of the aggregated)",
                looked * (decoded + upload) + gathered * upload,
            ),
            part("a lone update (largest tensor)", f * largest),
            part(
                "activations (evaluation, batch)",
                f * tokens * eval_floats_per_token(model),
            ),
        ],
        // Copies of the aggregated uploads and a checkpoint every `checkpoint_every` windows.
        bytes_up: gathered * upload + f * p / spec.checkpoint_every.max(1),
        bytes_down: looked * upload,
        flops: forwards as f64 * forward_flops(model, seq),
    };
    Ok(Costs {
        parameters: p,
        upload_bytes: upload,
        dense_bytes: f * p,
        downloads: looked,
        evaluations,
        miner,
        validator,
    })
}

fn part(name: &'static str, bytes: u64) -> Part {
    Part { name, bytes }
}

/// fp32 values autograd keeps per token for the backward pass: per layer the two norms' inputs,
/// q, k, v before and after RoPE, the repeated k and v, the attention output, the projections'
/// inputs and the residuals (11·hidden + 3·kv), the MLP's gate, up, SiLU and product
/// (4·intermediate); then the final norm and the logits with their log-softmax and gradient
/// (3·vocab).
fn train_floats_per_token(m: &ModelConfig) -> u64 {
    let (h, kv, ff) = dims(m);
    m.n_layers as u64 * (11 * h + 3 * kv + 4 * ff) + h + 3 * m.vocab_size as u64
}

/// fp32 values alive per token in an evaluation (no autograd): one layer's intermediates at a
/// time, the logits and their log-softmax.
fn eval_floats_per_token(m: &ModelConfig) -> u64 {
    let (h, kv, ff) = dims(m);
    4 * h + 2 * kv + 3 * ff + 2 * m.vocab_size as u64
}

fn dims(m: &ModelConfig) -> (u64, u64, u64) {
    (
        m.hidden_size as u64,
        (m.n_kv_heads * m.head_dim) as u64,
        m.intermediate_size as u64,
    )
}

/// Matrix-product flops of one forward pass over `tokens` tokens in sequences of
/// `max_seq_len`: 2 per weight of every projection and the output head (not the embedding
/// lookup), and the causal attention's scores and mixing.
fn forward_flops(m: &ModelConfig, tokens: u64) -> f64 {
    let (h, kv, ff) = dims(m);
    let q = (m.n_heads * m.head_dim) as u64;
    let per_layer = h * q + 2 * h * kv + q * h + 3 * h * ff;
    let weights = m.n_layers as u64 * per_layer + h * m.vocab_size as u64;
    let seq = m.max_seq_len as f64;
    // Scores and mixing: 2 · seq/2 (causal) · head_dim · heads, twice, per token and layer.
    let attention = 2.0 * seq * q as f64 * m.n_layers as f64;
    tokens as f64 * (2.0 * weights as f64 + attention)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_follow_the_model_and_the_run() {
        let spec = RunSpec::local("t", "tiny");
        let m = ModelConfig::preset("tiny").unwrap();
        let c = roles(&spec, &m, 4).unwrap();
        let p = m.num_params();
        assert_eq!(c.parameters, p);
        assert_eq!(c.dense_bytes, 4 * p);
        // A miner holds 5 model-sized buffers and its optimizer's two, a validator two.
        let sized = |r: &RoleCost| {
            r.memory
                .iter()
                .filter(|x| x.bytes == 4 * p || x.bytes == 8 * p)
                .map(|x| x.bytes)
                .sum::<u64>()
        };
        assert_eq!(sized(&c.miner), 7 * 4 * p);
        assert_eq!(sized(&c.validator), 2 * 4 * p);
        // The upload is about 146× below dense fp32 with packed indices (the codec's density),
        // more with Rice-coded ones (new runs' default).
        let ratio = c.dense_bytes as f64 / c.upload_bytes as f64;
        let mut packed_spec = spec.clone();
        packed_spec.indices = crate::Indices::Packed;
        let packed = roles(&packed_spec, &m, 4).unwrap();
        let packed_ratio = c.dense_bytes as f64 / packed.upload_bytes as f64;
        assert!((100.0..150.0).contains(&packed_ratio), "{packed_ratio}");
        assert!(
            ratio > 1.2 * packed_ratio,
            "{ratio} vs packed {packed_ratio}"
        );
        assert_eq!(c.miner.bytes_up, c.upload_bytes);
        assert_eq!(
            c.miner.bytes_down,
            4 * c.upload_bytes,
            "gathers the 4 peers there are"
        );
        assert_eq!(c.downloads, 4);
        // More peers: more to download, up to what a validator looks at.
        let big = roles(&spec, &m, 1000).unwrap();
        let looked = (8 + 64 + 8) as u64;
        assert_eq!(big.downloads, looked);
        assert_eq!(big.validator.bytes_down, looked * c.upload_bytes);
        assert!(big.validator.memory_total() > c.validator.memory_total());
        // A training step is 3 forward passes.
        let tokens = (spec.batch * m.max_seq_len) as u64;
        let step = c.miner.flops / f64::from(spec.params.inner_steps);
        assert!((step / (3.0 * forward_flops(&m, tokens)) - 1.0).abs() < 1e-12);
        assert!(
            forward_flops(&m, 1) > 2.0 * (p - (m.vocab_size * m.hidden_size) as u64) as f64 * 0.99
        );
    }
}

//! The LLaMA decoder, written to match Hugging Face `LlamaForCausalLM` operation for operation.
//!
//! Parameters are plain fp32 leaf tensors kept in [`ModelConfig::param_shapes`] order, so the
//! optimizer, checkpoints and flat views all share one list. On CUDA the matmuls and attention run
//! in bf16 (weights are cast per step, fp32 master copies are what the optimizer updates), norms,
//! residual stream and loss stay fp32: the same split that `torch.autocast(dtype=bfloat16)` makes.

use tch::{Device, Kind, Reduction, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// Offsets of one decoder layer's tensors inside the parameter list.
const IN_NORM: usize = 0;
const Q: usize = 1;
const K: usize = 2;
const V: usize = 3;
const O: usize = 4;
const POST_NORM: usize = 5;
const GATE: usize = 6;
const UP: usize = 7;
const DOWN: usize = 8;
const PER_LAYER: usize = 9;

pub(crate) struct Llama {
    pub cfg: ModelConfig,
    pub device: Device,
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub params: Vec<Tensor>,
    rope_cos: Tensor,
    rope_sin: Tensor,
    bf16: bool,
}

impl Llama {
    /// A freshly initialised model: like HF `_init_weights`, every matrix ~ N(0, 0.02), norms = 1.
    /// Initialisation happens on the CPU from `seed`, so a seed gives the same model on any device.
    pub fn new(cfg: &ModelConfig, seed: u64, device: Device) -> Result<Llama> {
        cfg.validate()?;
        tch::manual_seed(seed as i64);
        let shapes: Vec<(String, Vec<usize>)> = cfg.param_shapes();
        let mut params = Vec::with_capacity(shapes.len());
        for (name, shape) in &shapes {
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let t = if name.ends_with("norm.weight") {
                Tensor::f_ones(&dims, (Kind::Float, Device::Cpu))?
            } else {
                let mut t = Tensor::f_empty(&dims, (Kind::Float, Device::Cpu))?;
                let _ = t.f_normal_(0.0, 0.02)?;
                t
            };
            params.push(t);
        }
        Self::from_tensors(cfg, params, device)
    }

    /// Wrap CPU or device tensors given in `param_shapes` order (shapes must already be checked).
    pub fn from_tensors(cfg: &ModelConfig, tensors: Vec<Tensor>, device: Device) -> Result<Llama> {
        let shapes: Vec<(String, Vec<usize>)> = cfg.param_shapes();
        let mut params = Vec::with_capacity(tensors.len());
        for t in tensors {
            let t = t
                .f_to_kind(Kind::Float)?
                .f_to_device(device)?
                .f_contiguous()?
                .f_detach()?;
            params.push(t.f_set_requires_grad(true)?);
        }
        let (rope_cos, rope_sin) = rope_tables(cfg, device)?;
        Ok(Llama {
            cfg: cfg.clone(),
            device,
            names: shapes.iter().map(|(n, _)| n.clone()).collect(),
            shapes: shapes.into_iter().map(|(_, s)| s).collect(),
            params,
            rope_cos,
            rope_sin,
            bf16: device.is_cuda(),
        })
    }

    fn layer(&self, i: usize, which: usize) -> &Tensor {
        &self.params[1 + i * PER_LAYER + which]
    }
    fn embed(&self) -> &Tensor {
        &self.params[0]
    }
    fn final_norm(&self) -> &Tensor {
        &self.params[1 + self.cfg.n_layers * PER_LAYER]
    }
    fn head(&self) -> &Tensor {
        if self.cfg.tie_embeddings {
            self.embed()
        } else {
            &self.params[2 + self.cfg.n_layers * PER_LAYER]
        }
    }

    /// Index of the embedding matrix, and of norm weights (for the weight-decay mask).
    pub fn decays(&self, idx: usize) -> bool {
        // Matrices of the blocks and an untied output projection decay; embeddings and norms don't.
        idx != 0 && self.shapes[idx].len() == 2
    }

    fn lin(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self.bf16 {
            Ok(x.f_to_kind(Kind::BFloat16)?
                .f_linear(&w.f_to_kind(Kind::BFloat16)?, None::<Tensor>)?)
        } else {
            Ok(x.f_linear(w, None::<Tensor>)?)
        }
    }

    fn norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let h = self.cfg.hidden_size as i64;
        Ok(x.f_to_kind(Kind::Float)?
            .f_rms_norm([h], Some(w), self.cfg.norm_eps)?)
    }

    /// Final hidden states (after the last RMSNorm), [B, T, hidden], fp32.
    pub fn hidden(&self, tokens: &Tensor) -> Result<Tensor> {
        self.hidden_after(tokens, None)
    }

    /// [`Llama::hidden`] of `tokens` placed after the positions `cache` holds, whose keys and
    /// values they join: the prompt into an empty cache, then one token at a time.
    pub fn hidden_after(&self, tokens: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let c = &self.cfg;
        let t = tokens.size()[1];
        let start = cache.as_ref().map_or(0, |k| k.len);
        if start > 0 && t != 1 {
            return Err(ModelError::InvalidBatch(format!(
                "{t} tokens after {start} cached positions (one at a time after the prompt)"
            )));
        }
        if start + t > c.max_seq_len as i64 {
            return Err(ModelError::InvalidBatch(format!(
                "{} positions, the model has {}",
                start + t,
                c.max_seq_len
            )));
        }
        let cos = self.rope_cos.f_narrow(0, start, t)?;
        let sin = self.rope_sin.f_narrow(0, start, t)?;
        let (cos, sin) = if self.bf16 {
            (
                cos.f_to_kind(Kind::BFloat16)?,
                sin.f_to_kind(Kind::BFloat16)?,
            )
        } else {
            (cos, sin)
        };
        let mut x = Tensor::f_embedding(self.embed(), tokens, -1, false, false)?;
        for i in 0..c.n_layers {
            x = self.block(i, &x, (&cos, &sin), cache.as_deref_mut())?;
        }
        if let Some(k) = cache {
            k.len += t;
        }
        self.norm(&x, self.final_norm())
    }

    /// Decoder layer `i` on the residual stream `x` [B, T, hidden]: causal attention over `x`
    /// itself, or (one token) over the cached positions and itself.
    fn block(
        &self,
        i: usize,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let size = x.size();
        let (b, t) = (size[0], size[1]);
        let (nh, nkv, hd) = (c.n_heads as i64, c.n_kv_heads as i64, c.head_dim as i64);
        let rep = nh / nkv;
        let h = self.norm(x, self.layer(i, IN_NORM))?;
        let q = self
            .lin(&h, self.layer(i, Q))?
            .f_view([b, t, nh, hd])?
            .f_transpose(1, 2)?;
        let k = self
            .lin(&h, self.layer(i, K))?
            .f_view([b, t, nkv, hd])?
            .f_transpose(1, 2)?;
        let v = self
            .lin(&h, self.layer(i, V))?
            .f_view([b, t, nkv, hd])?
            .f_transpose(1, 2)?;
        let q = apply_rope(&q, cos, sin)?;
        let k = apply_rope(&k, cos, sin)?;
        let causal = cache.as_ref().is_none_or(|k| k.len == 0);
        let (k, v) = match cache {
            Some(kv) => kv.append(i, k, v)?,
            None => (k, v),
        };
        let (k, v) = if rep > 1 {
            (repeat_kv(&k, rep)?, repeat_kv(&v, rep)?)
        } else {
            (k, v)
        };
        let a = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        )?;
        let a = a.f_transpose(1, 2)?.f_reshape([b, t, nh * hd])?;
        let o = self.lin(&a, self.layer(i, O))?;
        let x = x.f_add(&o.f_to_kind(Kind::Float)?)?;
        let h = self.norm(&x, self.layer(i, POST_NORM))?;
        let g = self.lin(&h, self.layer(i, GATE))?.f_silu()?;
        let u = self.lin(&h, self.layer(i, UP))?;
        let m = self.lin(&g.f_mul(&u)?, self.layer(i, DOWN))?;
        Ok(x.f_add(&m.f_to_kind(Kind::Float)?)?)
    }

    /// Logits [B, T, vocab] in fp32 of `tokens` after the cached positions (see
    /// [`Llama::hidden_after`]).
    pub fn logits_after(&self, tokens: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let h = self.hidden_after(tokens, cache)?;
        Ok(self.lin(&h, self.head())?.f_to_kind(Kind::Float)?)
    }

    /// Logits [B, T, vocab] in fp32.
    pub fn logits(&self, tokens: &Tensor) -> Result<Tensor> {
        self.logits_after(tokens, None)
    }

    /// Mean next-token cross-entropy: positions 0..T-1 predict 1..T (HF `labels = input_ids`).
    pub fn loss(&self, tokens: &Tensor) -> Result<Tensor> {
        self.cross_entropy(tokens, Reduction::Mean)
    }

    /// [`Llama::loss`] of each sequence: `[B]`.
    pub fn sequence_losses(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self
            .token_losses(tokens)?
            .f_mean_dim(1, false, Kind::Float)?)
    }

    /// The cross-entropy of every predicted position: `[B, T − 1]`.
    pub fn token_losses(&self, tokens: &Tensor) -> Result<Tensor> {
        let b = tokens.size()[0];
        Ok(self
            .cross_entropy(tokens, Reduction::None)?
            .f_reshape([b, -1])?)
    }

    fn cross_entropy(&self, tokens: &Tensor, reduction: Reduction) -> Result<Tensor> {
        let size = tokens.size();
        let (b, t) = (size[0], size[1]);
        let h = self.hidden(tokens)?.f_narrow(1, 0, t - 1)?;
        let logits = self.lin(&h, self.head())?.f_to_kind(Kind::Float)?;
        let v = self.cfg.vocab_size as i64;
        let targets = tokens.f_narrow(1, 1, t - 1)?.f_reshape([b * (t - 1)])?;
        Ok(logits.f_reshape([b * (t - 1), v])?.f_cross_entropy_loss(
            &targets,
            None::<Tensor>,
            reduction,
            -100,
            0.0,
        )?)
    }
}

/// The keys and values of the positions a batch of sequences has seen, per layer
/// (`[B, kv_heads, positions, head_dim]`, before the heads are repeated): generation reads each
/// token's once instead of recomputing the prefix.
#[derive(Default)]
pub(crate) struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
}

impl KvCache {
    /// Appends layer `i`'s new keys and values; returns all of them.
    fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        if i == self.layers.len() {
            self.layers.push((k.shallow_clone(), v.shallow_clone()));
            return Ok((k, v));
        }
        let (pk, pv) = &self.layers[i];
        let k = Tensor::f_cat(&[pk, &k], 2)?;
        let v = Tensor::f_cat(&[pv, &v], 2)?;
        self.layers[i] = (k.shallow_clone(), v.shallow_clone());
        Ok((k, v))
    }
}

/// cos/sin tables [max_seq_len, head_dim] computed exactly as HF `LlamaRotaryEmbedding` (fp32).
fn rope_tables(cfg: &ModelConfig, device: Device) -> Result<(Tensor, Tensor)> {
    let d = cfg.head_dim as i64;
    let exps = Tensor::f_arange_start_step(0, d, 2, (Kind::Int64, Device::Cpu))?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(d as f64)?;
    let inv_freq = Tensor::f_pow_scalar(cfg.rope_theta, &exps)?.f_reciprocal()?;
    let pos = Tensor::f_arange(cfg.max_seq_len as i64, (Kind::Int64, Device::Cpu))?
        .f_to_kind(Kind::Float)?;
    let freqs = pos.f_unsqueeze(1)?.f_mul(&inv_freq.f_unsqueeze(0)?)?;
    let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
    Ok((
        emb.f_cos()?.f_to_device(device)?,
        emb.f_sin()?.f_to_device(device)?,
    ))
}

/// HF `rotate_half`: (x1, x2) -> (-x2, x1) over the two halves of the last dimension.
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.size()[3] / 2;
    let x1 = x.f_narrow(3, 0, half)?;
    let x2 = x.f_narrow(3, half, half)?;
    let rot = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
    Ok(x.f_mul(cos)?.f_add(&rot.f_mul(sin)?)?)
}

/// HF `repeat_kv`: [B, kv, T, D] -> [B, kv*rep, T, D], each kv head repeated `rep` times in place.
fn repeat_kv(x: &Tensor, rep: i64) -> Result<Tensor> {
    let s = x.size();
    Ok(x.f_unsqueeze(2)?
        .f_expand([s[0], s[1], rep, s[2], s[3]], false)?
        .f_reshape([s[0], s[1] * rep, s[2], s[3]])?)
}

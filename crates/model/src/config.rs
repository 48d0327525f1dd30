//! Model architecture configuration, presets and parameter counting.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Shape of a LLaMA-style decoder (see SPEC §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub rope_theta: f64,
    pub max_seq_len: usize,
    pub norm_eps: f64,
    pub tie_embeddings: bool,
}

const PRESETS: &[&str] = &["tiny", "tiny-tied", "small", "paper-512m", "covenant-72b"];

impl ModelConfig {
    /// Names accepted by [`ModelConfig::preset`].
    pub fn preset_names() -> &'static [&'static str] {
        PRESETS
    }

    /// A named preset. `tiny`/`tiny-tied` are for tests, `small` for demos and benchmarks,
    /// `paper-512m` is the SparseLoCo paper's model and `covenant-72b` the reference run's.
    pub fn preset(name: &str) -> Result<ModelConfig> {
        let tiny = ModelConfig {
            vocab_size: 8192,
            hidden_size: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 32,
            intermediate_size: 384,
            rope_theta: 10_000.0,
            max_seq_len: 128,
            norm_eps: 1e-5,
            tie_embeddings: false,
        };
        let cfg = match name {
            "tiny" => tiny,
            "tiny-tied" => ModelConfig {
                tie_embeddings: true,
                ..tiny
            },
            "small" => ModelConfig {
                vocab_size: 8192,
                hidden_size: 512,
                n_layers: 8,
                n_heads: 8,
                n_kv_heads: 4,
                head_dim: 64,
                intermediate_size: 1408,
                rope_theta: 10_000.0,
                max_seq_len: 256,
                norm_eps: 1e-5,
                tie_embeddings: false,
            },
            "paper-512m" => ModelConfig {
                vocab_size: 32_000,
                hidden_size: 1536,
                n_layers: 12,
                n_heads: 12,
                n_kv_heads: 12,
                head_dim: 128,
                intermediate_size: 5440,
                rope_theta: 10_000.0,
                max_seq_len: 2048,
                norm_eps: 1e-5,
                tie_embeddings: false,
            },
            "covenant-72b" => ModelConfig {
                vocab_size: 262_144,
                hidden_size: 8192,
                n_layers: 80,
                n_heads: 64,
                n_kv_heads: 8,
                head_dim: 128,
                intermediate_size: 28_672,
                rope_theta: 500_000.0,
                max_seq_len: 2048,
                norm_eps: 1e-5,
                tie_embeddings: true,
            },
            other => {
                return Err(ModelError::UnknownPreset {
                    name: other.to_string(),
                    known: PRESETS.join(", "),
                })
            }
        };
        Ok(cfg)
    }

    /// The same architecture with another vocabulary size (the tokenizer decides it).
    pub fn with_vocab(mut self, vocab_size: usize) -> Self {
        self.vocab_size = vocab_size;
        self
    }

    /// The same architecture with another maximum sequence length.
    pub fn with_max_seq_len(mut self, max_seq_len: usize) -> Self {
        self.max_seq_len = max_seq_len;
        self
    }

    /// Reject zero or inconsistent dimensions.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "n_heads ({}) must be a multiple of n_kv_heads ({})",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        if self.max_seq_len < 2 {
            return bad(format!(
                "max_seq_len ({}) must be at least 2",
                self.max_seq_len
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "rope_theta ({}) must be finite and > 0",
                self.rope_theta
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(format!(
                "norm_eps ({}) must be finite and > 0",
                self.norm_eps
            ));
        }
        // Token ids travel as u32 and i64 inside torch; keep every dimension well inside that.
        if self.vocab_size > u32::MAX as usize {
            return bad(format!(
                "vocab_size ({}) does not fit in u32 token ids",
                self.vocab_size
            ));
        }
        if self.num_params_checked().is_none() {
            return bad("parameter count overflows".into());
        }
        Ok(())
    }

    /// Number of unique parameters (tied embeddings counted once), computed without allocating.
    pub fn num_params(&self) -> u64 {
        self.num_params_checked().unwrap_or(u64::MAX)
    }

    fn num_params_checked(&self) -> Option<u64> {
        self.param_shapes().iter().try_fold(0u64, |acc, (_, s)| {
            let n = s.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
            acc.checked_add(n)
        })
    }

    /// Hugging Face names and shapes of all parameters, in checkpoint order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let q = self.n_heads * self.head_dim;
        let kv = self.n_kv_heads * self.head_dim;
        let f = self.intermediate_size;
        let mut v = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        for i in 0..self.n_layers {
            let p = format!("model.layers.{i}");
            v.push((format!("{p}.input_layernorm.weight"), vec![h]));
            v.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            v.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            v.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            v.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            v.push((format!("{p}.mlp.gate_proj.weight"), vec![f, h]));
            v.push((format!("{p}.mlp.up_proj.weight"), vec![f, h]));
            v.push((format!("{p}.mlp.down_proj.weight"), vec![h, f]));
        }
        v.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_embeddings {
            v.push(("lm_head.weight".to_string(), vec![self.vocab_size, h]));
        }
        v
    }

    /// A `config.json` that `transformers.LlamaConfig` accepts.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "num_hidden_layers": self.n_layers,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_seq_len,
            "tie_word_embeddings": self.tie_embeddings,
            "torch_dtype": "float32",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": true,
        })
    }

    /// Read a Hugging Face Llama `config.json` value back.
    pub fn from_hf_json(v: &serde_json::Value) -> Result<ModelConfig> {
        let get_u = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| {
                    ModelError::InvalidConfig(format!("config.json: missing or non-integer `{k}`"))
                })
        };
        let get_f = |k: &str, d: f64| -> Result<f64> {
            match v.get(k) {
                None => Ok(d),
                Some(x) => x.as_f64().ok_or_else(|| {
                    ModelError::InvalidConfig(format!("config.json: non-numeric `{k}`"))
                }),
            }
        };
        let hidden_size = get_u("hidden_size")?;
        let n_heads = get_u("num_attention_heads")?;
        let n_kv_heads = match v.get("num_key_value_heads") {
            None => n_heads,
            Some(_) => get_u("num_key_value_heads")?,
        };
        let head_dim = match v.get("head_dim") {
            Some(x) if !x.is_null() => get_u("head_dim")?,
            _ => hidden_size.checked_div(n_heads).unwrap_or(0),
        };
        let cfg = ModelConfig {
            vocab_size: get_u("vocab_size")?,
            hidden_size,
            n_layers: get_u("num_hidden_layers")?,
            n_heads,
            n_kv_heads,
            head_dim,
            intermediate_size: get_u("intermediate_size")?,
            rope_theta: get_f("rope_theta", 10_000.0)?,
            max_seq_len: get_u("max_position_embeddings")?,
            norm_eps: get_f("rms_norm_eps", 1e-5)?,
            tie_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covenant_72b_has_70_6b_unique_params() {
        let c = ModelConfig::preset("covenant-72b").unwrap();
        c.validate().unwrap();
        let n = c.num_params();
        // 70.6B after rounding to one decimal of a billion.
        assert_eq!((n as f64 / 1e8).round() as u64, 706, "got {n}");
        // exact: embeddings 262144*8192 + 80 layers + final norm
        let layer = 2 * 8192 * 8192 + 2 * 1024 * 8192 + 3 * 8192 * 28672 + 2 * 8192;
        assert_eq!(n, 262_144 * 8192 + 80 * layer + 8192);
    }

    #[test]
    fn presets_validate_and_sizes_are_as_documented() {
        for name in ModelConfig::preset_names() {
            let c = ModelConfig::preset(name).unwrap();
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let tiny = ModelConfig::preset("tiny").unwrap();
        assert!(tiny.n_kv_heads < tiny.n_heads);
        assert!(tiny.num_params() < 5_000_000);
        let small = ModelConfig::preset("small").unwrap().num_params();
        assert!((25_000_000..=40_000_000).contains(&small), "{small}");
        let p = ModelConfig::preset("paper-512m").unwrap().num_params();
        assert!((500_000_000..525_000_000).contains(&p), "{p}");
        // tying removes exactly one vocab x hidden matrix
        let tied = ModelConfig::preset("tiny-tied").unwrap().num_params();
        assert_eq!(tiny.num_params() - tied, 8192 * 128);
    }

    #[test]
    fn unknown_preset_and_bad_dims_are_rejected() {
        let e = ModelConfig::preset("huge").unwrap_err().to_string();
        assert!(e.contains("huge") && e.contains("tiny"), "{e}");
        let mut c = ModelConfig::preset("tiny").unwrap();
        c.n_kv_heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("n_kv_heads"));
        let c = ModelConfig::preset("tiny").unwrap().with_vocab(0);
        assert!(c.validate().unwrap_err().to_string().contains("vocab_size"));
        let mut c = ModelConfig::preset("tiny").unwrap();
        c.head_dim = 31;
        assert!(c.validate().is_err());
    }

    #[test]
    fn hf_json_round_trips() {
        for name in ModelConfig::preset_names() {
            let c = ModelConfig::preset(name).unwrap();
            assert_eq!(ModelConfig::from_hf_json(&c.to_hf_json()).unwrap(), c);
        }
    }
}
